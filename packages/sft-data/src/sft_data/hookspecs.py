"""Hooks that sft-data calls. Plugins implement them with ``sft_core.hookimpl``.

All four are registration hooks: they are called (through pluggy) when a registry is built, receive
a ``register`` callback, and return nothing. ``register(obj)`` uses ``obj.name``; a name registered
twice is an error naming both plugins. Registries keep pluggy's call order: the plugin registered
last is asked first where order matters (tokenizer loaders, format detection), so a plugin can take
precedence over a built-in and decline what it does not handle.

sft-core finds this module through sft-data's ``sft_hosts`` entry point: ``DEFAULT_PLUGINS`` are
sft-data's built-ins, registered like any plugin.
"""

from __future__ import annotations

from sft_core import Register, hookimpl, hookspec

__all__ = ["DEFAULT_PLUGINS", "LAYER", "Register", "hookimpl", "hookspec"]

LAYER = 1
DEFAULT_PLUGINS: tuple[str, ...] = (
    "sft_data.formats.builtin",
    "sft_data.templates.builtin",
    "sft_data.tokenizers.builtin",
    "sft_data.packing.builtin",
)


@hookspec
def sft_register_dataset_formats(register: Register) -> None:
    """Register record formats (``sft_data.formats.DatasetFormat``).

    A format has a ``name`` (what ``--format`` accepts), ``detect(record) -> bool`` used by
    ``--format auto`` on the first record (formats asked in pluggy's order, a plugin's first), and ``parse(record, options)`` returning a
    ``PromptResponse`` or a ``Conversation``, raising ``RecordError`` with a reason for bad records.
    A format for files of a kind ``sft_data.inputs`` does not read (CSV...) also defines ``read(path)`` yielding
    ``sft_data.records.Record`` (path, line, data) or ``RecordProblem``; it is used when
    ``--format`` names that format.
    """


@hookspec
def sft_register_chat_templates(register: Register) -> None:
    """Register named chat templates (``sft_data.templates.ChatTemplate``).

    A template has a ``name`` (what ``--chat-template`` accepts) and
    ``render(conversation, add_generation_prompt) -> list[Segment]``: the text pieces in order,
    each marked trained or not and special or not. They are joined into one text and encoded in
    one pass; a token is trained when any of its characters comes from a trained piece.
    """


@hookspec
def sft_register_tokenizers(register: Register) -> None:
    """Register tokenizer loaders (``sft_data.tokenizers.TokenizerLoader``).

    A loader has a ``name``, ``can_load(path) -> bool`` and ``load(path) -> Tokenizer``. Loaders are
    asked in pluggy's order (the last registered plugin first; ``tryfirst``/``trylast`` apply) and
    the first whose ``can_load`` is true loads the path.
    """


@hookspec
def sft_register_packing_algorithms(register: Register) -> None:
    """Register bin-packing algorithms (``sft_data.packing.PackingAlgorithm``).

    An algorithm has a ``name`` and ``pack(lengths, pack_size, seed) -> list[list[int]]`` returning
    bins of indices into ``lengths``; every index must appear in exactly one bin and no bin may sum
    to more than ``pack_size``.
    """
