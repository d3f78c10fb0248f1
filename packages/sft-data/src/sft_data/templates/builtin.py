"""Built-in templates, registered like a plugin's."""

from sft_core import hookimpl

from sft_data.templates.nemo import NemoChatTemplate
from sft_data.templates.resolve import chatml_template, llama3_template


@hookimpl
def sft_register_chat_templates(register):
    register(NemoChatTemplate())
    register(chatml_template())
    register(llama3_template())
