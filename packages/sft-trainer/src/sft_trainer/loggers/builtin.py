"""Built-in loggers, registered like a plugin's."""

from sft_core import hookimpl

from sft_trainer.loggers.console import ConsoleLoggerFactory
from sft_trainer.loggers.jsonl import JsonlLoggerFactory


@hookimpl
def sft_register_loggers(register):
    register(JsonlLoggerFactory())
    register(ConsoleLoggerFactory())
