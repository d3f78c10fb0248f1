"""Built-in templates, registered like a plugin's."""

from sft_data.hookspecs import hookimpl


@hookimpl
def sft_register_chat_templates(register):
    pass
