"""Built-in formats, registered like a plugin's."""

from sft_data.hookspecs import hookimpl


@hookimpl
def sft_register_dataset_formats(register):
    pass
