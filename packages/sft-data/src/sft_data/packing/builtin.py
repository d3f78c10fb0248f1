"""Built-in packing, registered like a plugin's."""

from sft_data.hookspecs import hookimpl


@hookimpl
def sft_register_packing_algorithms(register):
    pass
