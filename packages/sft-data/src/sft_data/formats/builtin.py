"""Built-in dataset formats, registered like a plugin's."""

from sft_core import hookimpl

from sft_data.formats.messages import AlpacaFormat, MessagesFormat, ShareGPTFormat
from sft_data.formats.nemo_chat import NemoChatFormat
from sft_data.formats.prompt_response import PromptResponseFormat


@hookimpl
def sft_register_dataset_formats(register):
    # Registration order is detection order: the most specific shapes first.
    register(NemoChatFormat())
    register(ShareGPTFormat())
    register(MessagesFormat())
    register(AlpacaFormat())
    register(PromptResponseFormat())
