"""The training configuration: NeMo-Aligner's ``gpt_sft.yaml`` keys, typed and documented.

Keys the reference accepted that have no effect here are listed in ``IGNORED_REFERENCE_KEYS`` and
accepted with a warning, so an Aligner YAML file loads; anything else unknown is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sft_core import SftError

PRECISIONS = ("bf16", "bf16-mixed", "32", "32-true", "fp32")


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
        if self.name != "CosineAnnealing":
            raise SftError(f"model.optim.sched.name must be CosineAnnealing, got {self.name!r}")
        if self.warmup_steps < 0 or self.constant_steps < 0:
            raise SftError("warmup_steps and constant_steps must not be negative")


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
        names = ("distributed_fused_adam", "fused_adam", "adam", "adamw", "mcore_distributed_optim")
        if self.name not in names:
            raise SftError(f"model.optim.name must be one of {names}, got {self.name!r}")
        if len(self.betas) != 2:
            raise SftError(f"model.optim.betas needs two values, got {self.betas}")
        if self.lr <= 0:
            raise SftError(f"model.optim.lr must be positive, got {self.lr}")


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


@dataclass
class PeftConfig:
    peft_scheme: str = "none"
    """``none`` or a PEFT method registered by a plugin (``lora`` with sft-lora)."""
    lora_tuning: dict[str, Any] = field(default_factory=dict)
    """LoRA settings, validated by the plugin that implements ``lora``."""


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
        for key in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "micro_batch_size",
                    "global_batch_size"):
            if getattr(self, key) < 1:
                raise SftError(f"model.{key} must be at least 1, got {getattr(self, key)}")


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    """Stop when validation loss has not improved for ``patience`` validations."""
    patience: int = 3
    """Validations without improvement before stopping."""
    min_delta: float = 0.0
    """Smallest decrease that counts as an improvement."""


@dataclass
class InferenceMetricsConfig:
    """Generation metrics at validation time (the reference's ``inference_metrics``): the model
    answers the first ``num_samples`` validation samples greedily and each metric compares the
    answer with the sample's trained text; logged as ``validation/<metric>``."""

    metrics: list[str] = field(default_factory=list)
    """Registered metric names (built in: ``exact_match``, ``token_f1``); empty disables."""
    num_samples: int = 32
    """Validation samples answered per validation (the first ones, the same every time)."""
    max_new_tokens: int = 64
    """Longest answer generated."""
    batch_size: int = 8
    """Prompts per generation batch."""

    def __post_init__(self) -> None:
        for key in ("num_samples", "max_new_tokens", "batch_size"):
            if getattr(self, key) < 1:
                raise SftError(f"trainer.sft.inference_metrics.{key} must be at least 1, got {getattr(self, key)}")


@dataclass
class SFTLoopConfig:
    max_epochs: int | None = 1
    """Epochs over the training data; None or -1: no epoch limit (max_steps must be set)."""
    max_steps: int = -1
    """Optimizer steps; -1: no step limit. Whichever of max_epochs / max_steps ends first wins."""
    val_check_interval: int | float = 100
    """Validate every N steps (int) or every fraction of an epoch (float ≤ 1)."""
    save_interval: int | None = None
    """Checkpoint every N steps; defaults to the validation interval."""
    limit_val_batches: int | float = 1.0
    """Validation global batches per validation (int) or fraction of them (float); 0 disables."""
    limit_train_batches: int | float = 1.0
    """Fraction (float) or number (int) of training batches per epoch."""
    gradient_clip_val: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    log_every_n_steps: int = 1
    """Write metrics every N steps."""
    skip_nonfinite_steps: bool = False
    """On a NaN/Inf loss, skip the update and go on instead of stopping."""
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    """Early stopping on validation loss."""
    inference_metrics: InferenceMetricsConfig = field(default_factory=InferenceMetricsConfig)
    """Generation metrics computed at each validation."""


@dataclass
class TrainerSection:
    precision: str | int = "bf16"
    """``bf16`` (GPU default; fp32 master weights) or ``32``. CPU runs always use fp32."""
    devices: int | str = 1
    """Informational: processes come from torchrun."""
    num_nodes: int = 1
    """Informational: nodes come from torchrun."""
    accelerator: str = "auto"
    """``auto`` (GPU when available), ``gpu`` or ``cpu``."""
    sft: SFTLoopConfig = field(default_factory=SFTLoopConfig)
    """The SFT loop."""

    def __post_init__(self) -> None:
        if str(self.precision) not in (*PRECISIONS, "16", "16-mixed", "bf16-true"):
            raise SftError(f"trainer.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.accelerator not in ("auto", "gpu", "cpu"):
            raise SftError(f"trainer.accelerator must be auto, gpu or cpu, got {self.accelerator!r}")


@dataclass
class CheckpointCallbackParams:
    save_top_k: int = 5
    """Keep the best k checkpoints by ``monitor`` (plus the last)."""
    monitor: str = "val_loss"
    """Only validation loss is monitored."""
    mode: str = "min"
    """``min`` or ``max``."""
    save_nemo_on_train_end: bool = True
    """Write ``megatron_gpt_sft.nemo`` at the end."""

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise SftError(f"checkpoint_callback_params.mode must be min or max, got {self.mode!r}")
        if self.monitor not in ("val_loss", "validation/loss"):
            raise SftError(f"checkpoint_callback_params.monitor must be val_loss, got {self.monitor!r}")


@dataclass
class ExpManagerSection:
    explicit_log_dir: str | None = None
    """The run directory (metrics.jsonl, checkpoints/)."""
    exp_dir: str | None = None
    """Parent of ``name/`` when explicit_log_dir is not set."""
    name: str = "megatron_gpt_sft"
    """Run name."""
    resume_if_exists: bool = True
    """Resume from the newest complete checkpoint in the run directory."""
    create_checkpoint_callback: bool = True
    """Write checkpoints."""
    checkpoint_callback_params: CheckpointCallbackParams = field(default_factory=CheckpointCallbackParams)
    """Checkpoint selection."""
    create_wandb_logger: bool = False
    """Log to Weights & Biases (needs the sft-wandb plugin)."""
    wandb_logger_kwargs: dict[str, Any] = field(default_factory=dict)
    """W&B project, name, ..."""
    create_tensorboard_logger: bool = True
    """Log to TensorBoard when the sft-tensorboard plugin is installed."""


@dataclass
class TrainConfig:
    name: str = "megatron_gpt_sft"
    """Run name."""
    trainer: TrainerSection = field(default_factory=TrainerSection)
    """Loop, precision."""
    model: ModelSection = field(default_factory=ModelSection)
    """Model, data, optimizer."""
    exp_manager: ExpManagerSection = field(default_factory=ExpManagerSection)
    """Outputs, checkpoints, resume, loggers."""
