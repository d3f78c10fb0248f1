"""The ``model`` section of the training config: parallel sizes, batch sizes, seed, dropout,
optimizer and schedule, data and PEFT (NeMo-Aligner's ``model.*`` keys), range-checked as read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sft_core import SftError
from sft_data.config import DataConfig
from sft_data.templates.base import ChatPromptTokens

from sft_trainer.config import checks
from sft_trainer.config.structured import ConfigError, ConfigValueError


@dataclass
class SchedConfig:
    name: str = "CosineAnnealing"
    """Only CosineAnnealing (linear warmup from 0, constant phase, cosine decay to min_lr)."""
    warmup_steps: int = 10
    """Steps of linear warmup from 0 to lr."""
    constant_steps: int = 1000
    """Steps held at lr after warmup, before the cosine decay."""
    min_lr: float = 9e-7
    """The learning rate at the end of the decay (and after it)."""

    def __post_init__(self) -> None:
        checks.choice(self, "name", ("CosineAnnealing",))
        checks.integer(self, "warmup_steps", 0)
        checks.integer(self, "constant_steps", 0)
        checks.number(self, "min_lr", 0.0)


@dataclass
class OptimConfig:
    name: str = "distributed_fused_adam"
    """AdamW in every case; ``distributed_fused_adam`` shards optimizer state over data-parallel ranks."""
    lr: float = 3e-5
    """Peak learning rate."""
    weight_decay: float = 0.01
    """Decoupled weight decay (not applied to biases and norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    sched: SchedConfig = field(default_factory=SchedConfig)
    """Learning-rate schedule."""

    def __post_init__(self) -> None:
        checks.choice(self, "name", ("distributed_fused_adam", "fused_adam", "adam", "adamw", "mcore_distributed_optim"))
        checks.number(self, "lr", 0.0, low_open=True)
        checks.number(self, "weight_decay", 0.0)
        checks.number(self, "eps", 0.0, low_open=True)
        if not isinstance(self.betas, list | tuple) or len(self.betas) != 2:
            raise ConfigValueError("betas", self.betas, "two numbers in [0, 1)")
        for i, beta in enumerate(self.betas):
            checks.check_number(beta, f"betas[{i}]", 0.0, 1.0, high_open=True)
        if self.sched.min_lr > self.lr:
            raise ConfigValueError("sched.min_lr", self.sched.min_lr, f"<= lr ({self.lr:g})")


@dataclass
class DatasetConfig:
    file_path: str | list[str] | None = None
    """JSONL file(s), or a directory written by ``sft prepare`` (used as is)."""
    prompt_template: str = "{input} {output}"
    """Prompt-response template; the label placeholder is last."""
    label_key: str = "output"
    """Prompt-response answer field."""
    truncation_field: str = "input"
    """Comma-separated fields truncated first when too long."""
    truncation_method: str = "right"
    """``right`` or ``left``."""
    add_bos: bool = False
    """Prepend BOS (prompt-response)."""
    add_eos: bool = True
    """Append a trained EOS (prompt-response)."""
    add_sep: bool = False
    """Separator between prompt and answer (prompt-response)."""
    max_seq_length: int = 2048
    """Longest sample in tokens."""
    packed_sequence: bool = False
    """Pack samples into ``pack_size`` rows (position ids restart, no attention across samples)."""
    pack_size: int | None = None
    """Tokens per packed row; defaults to max_seq_length."""
    packing_algorithm: str = "first_fit_shuffle"
    """A registered packing algorithm."""
    shuffle: bool = True
    """Shuffle every epoch (validation never shuffles)."""
    drop_last: bool = True
    """Drop the last incomplete global batch of an epoch."""
    skip_invalid: bool = False
    """Skip invalid records instead of failing."""
    format: str = "auto"
    """Record format (auto-detected by default)."""

    def __post_init__(self) -> None:
        paths = [self.file_path] if isinstance(self.file_path, str) else self.file_path
        if paths is not None and (not paths or not all(isinstance(p, str) and p.strip() for p in paths)):
            raise ConfigValueError("file_path", self.file_path, "a path, a non-empty list of paths, or null")
        checks.text(self, "label_key")
        checks.choice(self, "truncation_method", ("right", "left"))
        checks.integer(self, "max_seq_length", 2)
        if self.pack_size is not None:
            checks.integer(self, "pack_size", self.max_seq_length)
        checks.text(self, "packing_algorithm")
        checks.text(self, "format")

    def data_config(self, section: DataSection, answer_only_loss: bool, seed: int) -> DataConfig:
        """The sft-data settings of this dataset (the reference's model.data.*_ds keys)."""
        pack_size = (self.pack_size or self.max_seq_length) if self.packed_sequence else None
        return DataConfig(
            format=self.format, prompt_template=self.prompt_template, label_key=self.label_key,
            truncation_field=self.truncation_field, truncation_method=self.truncation_method, add_bos=self.add_bos,
            add_eos=self.add_eos, add_sep=self.add_sep, max_seq_length=self.max_seq_length,
            answer_only_loss=answer_only_loss, chat_template=section.chat_template,
            chat_prompt_tokens=dict(section.chat_prompt_tokens), pack_size=pack_size,
            packing_algorithm=self.packing_algorithm, seed=seed, skip_invalid=self.skip_invalid,
        )


@dataclass
class DataSection:
    chat: bool = False
    """The reference's switch for chat data; records are detected either way, kept for compatibility."""
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


@dataclass
class PeftConfig:
    peft_scheme: str = "none"
    """``none`` or a PEFT method registered by a plugin (``lora`` with sft-lora)."""
    lora_tuning: dict[str, Any] = field(default_factory=dict)
    """LoRA settings, validated by the plugin that implements ``lora``."""

    def __post_init__(self) -> None:
        checks.text(self, "peft_scheme")


@dataclass
class ModelSection:
    restore_from_path: str | None = None
    """The ``.nemo`` to fine-tune."""
    tensor_model_parallel_size: int = 1
    """Tensor-parallel ranks."""
    pipeline_model_parallel_size: int = 1
    """Pipeline stages."""
    micro_batch_size: int = 1
    """Rows per forward pass on one rank."""
    global_batch_size: int = 128
    """Rows per optimizer step over all data-parallel ranks and micro-batches."""
    answer_only_loss: bool = True
    """Train only on answers / assistant turns."""
    seed: int = 1234
    """Seed for initialisation, dropout, data order."""
    hidden_dropout: float = 0.0
    """Dropout after attention and MLP."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities."""
    ffn_dropout: float = 0.0
    """Accepted for compatibility; megatron-core applies hidden_dropout to the MLP output."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    data: DataSection = field(default_factory=DataSection)
    """Data."""
    peft: PeftConfig = field(default_factory=PeftConfig)
    """Parameter-efficient fine-tuning."""

    def __post_init__(self) -> None:
        checks.text(self, "restore_from_path", optional=True)
        for key in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "micro_batch_size",
                    "global_batch_size"):
            checks.integer(self, key, 1)
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigValueError("global_batch_size", self.global_batch_size,
                                   f"a multiple of micro_batch_size ({self.micro_batch_size})")
        checks.integer(self, "seed", 0, 2**32 - 1)
        for key in ("hidden_dropout", "attention_dropout", "ffn_dropout"):
            checks.number(self, key, 0.0, 1.0, high_open=True)
        # the data settings sft-data checks itself (label placeholder, chat tokens, add_sep...), now
        # rather than after the model has loaded
        for name in ("train_ds", "validation_ds"):
            try:
                getattr(self.data, name).data_config(self.data, self.answer_only_loss, self.seed)
            except SftError as exc:
                raise ConfigError(f"model.data.{name}: {exc}") from None
