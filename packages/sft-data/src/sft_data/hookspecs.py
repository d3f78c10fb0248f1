"""Hooks that sft-data calls. Plugins implement them with ``@hookimpl`` (``HookimplMarker("sft")``).

All four are registration hooks: they are called once when a registry is built, receive a
``register`` callback, and return nothing. ``register(obj)`` uses ``obj.name``; a name registered
twice is an error naming both plugins.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("sft")
hookimpl = pluggy.HookimplMarker("sft")

Register = Callable[..., None]


@hookspec
def sft_register_dataset_formats(register: Register) -> None:
    """Register record formats (``sft_data.formats.DatasetFormat``).

    A format has a ``name`` (what ``--format`` accepts), ``detect(record) -> bool`` used by
    ``--format auto`` on the first record, and ``parse(record, options)`` returning a
    ``PromptResponse`` or a ``Conversation``, raising ``RecordError`` with a reason for bad records.
    A format for files other than JSON Lines also defines ``read(path)`` yielding
    ``sft_data.records.Record`` (path, line, fields) or ``RecordProblem``; it is used when
    ``--format`` names that format.
    """


@hookspec
def sft_register_chat_templates(register: Register) -> None:
    """Register named chat templates (``sft_data.templates.ChatTemplate``).

    A template has a ``name`` (what ``--chat-template`` accepts) and
    ``render(conversation, add_generation_prompt) -> list[Segment]``: the text pieces in order,
    each marked trained or not and special or not. Loss masks come from these segments.
    """


@hookspec
def sft_register_tokenizers(register: Register) -> None:
    """Register tokenizer loaders (``sft_data.tokenizers.TokenizerLoader``).

    A loader has a ``name``, ``can_load(path) -> bool`` and ``load(path) -> Tokenizer``. The first
    loader (in registration order) that can load a path is used.
    """


@hookspec
def sft_register_packing_algorithms(register: Register) -> None:
    """Register bin-packing algorithms (``sft_data.packing.PackingAlgorithm``).

    An algorithm has a ``name`` and ``pack(lengths, pack_size, seed) -> list[list[int]]`` returning
    bins of indices into ``lengths``; every index must appear in exactly one bin and no bin may sum
    to more than ``pack_size``.
    """
