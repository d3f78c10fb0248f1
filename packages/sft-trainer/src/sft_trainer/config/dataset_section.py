"""``model.data``: the data section, with the reference's dataset keys.

A dataset section (``train_ds``, ``validation_ds``) declares only what the trainer itself uses
(files, batch sizes, packing, order); the keys that say how records become samples
(``prompt_template``, ``label_key``, ``truncation_*``, ``add_*``, ``max_seq_length``, …) are
sft-data's ``DataConfig`` fields, taken from it with their types and defaults rather than declared a
second time.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from sft_core import SftError
from sft_data.config import DataConfig
from sft_data.mixture import TOLERANCE
from sft_data.templates.base import ChatPromptTokens

from sft_trainer.config import checks
from sft_trainer.config.structured import ConfigValueError

SAMPLE_KEYS = ("prompt_template", "label_key", "truncation_field", "truncation_method", "add_bos", "add_eos",
               "add_sep", "max_seq_length", "min_seq_length", "overlong", "packing_algorithm", "skip_invalid", "format",
               "tools", "train_reasoning")
"""DataConfig fields that are per-dataset keys under the reference's names (the same names), and
sft-data's own per-dataset settings (``tools``, ``train_reasoning``)."""


def _shared_fields() -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(DataConfig)
    fields = {f.name: f for f in dataclasses.fields(DataConfig)}
    shared = []
    for name in SAMPLE_KEYS:
        source = fields[name]
        copy = (field(default_factory=source.default_factory) if source.default_factory is not dataclasses.MISSING
                else field(default=source.default))
        shared.append((name, hints[name], copy))
    return shared


def _paths(self) -> list[str] | None:
    """The dataset's files (``file_path``, or NeMo's ``file_names``), as a list; None when unset."""
    value = self.file_names if self.file_names is not None else self.file_path
    return [value] if isinstance(value, str) else value


def _check_files(self) -> None:
    for key in ("file_path", "file_names"):
        value = getattr(self, key)
        paths = [value] if isinstance(value, str) else value
        if paths is not None and (not paths or not all(isinstance(p, str) and p.strip() for p in paths)):
            raise ConfigValueError(key, value, "a path, a non-empty list of paths, or null")
    if self.file_path is not None and self.file_names is not None:
        raise ConfigValueError("file_names", self.file_names, "null when file_path is set (both name the "
                               "dataset's files: set one)")
    weights = self.concat_sampling_probabilities
    if weights is None:
        return
    for i, weight in enumerate(weights):
        checks.check_number(weight, f"concat_sampling_probabilities[{i}]", 0.0, 1.0)
    total = math.fsum(weights)
    if not weights or abs(total - 1.0) > TOLERANCE:
        raise ConfigValueError("concat_sampling_probabilities", weights, f"probabilities that sum to 1 (these sum "
                                                                           f"to {total:g})")
    paths = _paths(self)
    if paths is not None and len(paths) != len(weights):
        raise ConfigValueError("concat_sampling_probabilities", weights, f"one probability per file ({len(paths)} "
                                                                           f"file{'s' * (len(paths) != 1)})")


def _check(self) -> None:
    _check_files(self)
    for key in ("global_batch_size", "micro_batch_size"):
        if getattr(self, key) is not None:
            checks.integer(self, key, 1)
    checks.text(self, "label_key")
    checks.choice(self, "truncation_method", ("right", "left"))
    checks.choice(self, "overlong", ("truncate", "drop"))
    checks.integer(self, "max_seq_length", 2)
    checks.integer(self, "min_seq_length", 1, self.max_seq_length)
    if self.pack_size is not None:
        checks.integer(self, "pack_size", self.max_seq_length)
    checks.text(self, "packing_algorithm")
    checks.text(self, "format")


def _data_config(self, section: DataSection, answer_only_loss: bool, seed: int) -> DataConfig:
    """The sft-data settings of this dataset (the reference's model.data.*_ds keys)."""
    pack_size = (self.pack_size or self.max_seq_length) if self.packed_sequence else None
    return DataConfig(**{k: getattr(self, k) for k in SAMPLE_KEYS}, answer_only_loss=answer_only_loss,
                      chat_template=section.chat_template, chat_prompt_tokens=dict(section.chat_prompt_tokens),
                      pack_size=pack_size, seed=seed)


DatasetConfig = dataclasses.make_dataclass(
    "DatasetConfig",
    [
        # the trainer's own keys (documented in DATASET_KEYS below); then sft-data's DataConfig fields
        ("file_path", str | list[str] | None, field(default=None)),
        ("file_names", list[str] | None, field(default=None)),
        ("concat_sampling_probabilities", list[float] | None, field(default=None)),
        ("global_batch_size", int | None, field(default=None)),
        ("micro_batch_size", int | None, field(default=None)),
        ("packed_sequence", bool, field(default=False)),
        ("pack_size", int | None, field(default=None)),
        ("shuffle", bool, field(default=True)),
        ("drop_last", bool, field(default=True)),
        *_shared_fields(),
    ],
    namespace={"__post_init__": _check, "data_config": _data_config, "paths": _paths, "__module__": __name__,
               "__doc__": "One dataset section (``model.data.train_ds`` / ``validation_ds``)."},
)

DATASET_KEYS = {
    "file_path": "JSONL file(s), or a directory written by ``sft prepare`` (used as is); several are "
                 "concatenated into one dataset, or mixed by ``concat_sampling_probabilities``.",
    "file_names": "NeMo's name for a list of files: the same as a list in ``file_path`` (set one of them).",
    "concat_sampling_probabilities": "train_ds: one probability per file, summing to 1: the files are mixed "
                                     "with these weights (``sft_data.mixture``: an epoch is as many items as "
                                     "the files hold together, each file's share drawn exactly, a new draw "
                                     "each epoch); null concatenates them. validation_ds: no effect (every "
                                     "validation sample is used once).",
    "global_batch_size": "The reference's place for the batch size (train_ds: the run's; validation_ds: "
                         "validation's, default the run's).",
    "micro_batch_size": "Likewise for the micro-batch size.",
    "packed_sequence": "Pack samples into ``pack_size`` rows (position ids restart, no attention across samples).",
    "pack_size": "Tokens per packed row; defaults to max_seq_length.",
    "shuffle": "Shuffle every epoch (validation never shuffles).",
    "drop_last": "Drop the last incomplete global batch of an epoch.",
}
"""What the trainer's own dataset keys mean (the shared ones are documented on ``DataConfig``)."""


@dataclass
class DataSection:
    chat_prompt_tokens: dict[str, Any] = field(default_factory=dict)
    """NeMo chat control strings (system_turn_start, turn_start, label_start, end_of_turn, end_of_name)."""
    chat_template: str | None = None
    """Chat template name, .jinja file, or ``tokenizer``; default: nemo for NeMo chat records."""
    train_ds: DatasetConfig = field(default_factory=DatasetConfig)
    """Training data."""
    validation_ds: DatasetConfig = field(default_factory=lambda: DatasetConfig(shuffle=False, drop_last=False))
    """Validation data."""

    def __post_init__(self) -> None:
        checks.text(self, "chat_template", optional=True)
        try:
            ChatPromptTokens.from_dict(self.chat_prompt_tokens)
        except SftError:
            raise ConfigValueError("chat_prompt_tokens", self.chat_prompt_tokens, "a mapping of "
                                   + ", ".join(ChatPromptTokens.__dataclass_fields__) + " to strings") from None
