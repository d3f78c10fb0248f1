"""Built-in packing algorithms, registered like a plugin's."""

from sft_core import hookimpl

from sft_data.packing.algorithms import BUILTIN_ALGORITHMS


@hookimpl
def sft_register_packing_algorithms(register):
    for algorithm in BUILTIN_ALGORITHMS:
        register(algorithm)
