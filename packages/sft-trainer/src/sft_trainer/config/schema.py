"""The training configuration: NeMo-Aligner's ``gpt_sft.yaml`` keys, typed and documented.

Keys the reference accepted that have no effect here are listed in ``reference_keys`` (shown once,
with the reason), so an Aligner YAML file loads; plugins own their sections (``sections``); anything
else unknown is an error.

Every value is range-checked here (``config.checks``), when the config is read: a value that would
only fail later, after the model has loaded, or that would train on silently with NaN or a negative
learning rate, is one line naming its dotted key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sft_trainer.config import checks
from sft_trainer.config.dataset_section import DataSection, DatasetConfig  # noqa: F401 (one namespace)
from sft_trainer.config.model_section import (  # noqa: F401 (re-exported: the schema is one namespace)
    ModelSection,
    OptimConfig,
    PeftConfig,
    SchedConfig,
)
from sft_trainer.config.structured import ConfigValueError

PRECISIONS = ("bf16", "bf16-mixed", "32", "32-true", "fp32")


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    """Stop when validation loss has not improved for ``patience`` validations."""
    patience: int = 3
    """Validations without improvement before stopping."""
    min_delta: float = 0.0
    """Smallest decrease that counts as an improvement."""

    def __post_init__(self) -> None:
        checks.integer(self, "patience", 1)
        checks.number(self, "min_delta", 0.0)


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
            checks.integer(self, key, 1)
        for i, name in enumerate(self.metrics):
            if not name.strip():
                raise ConfigValueError(f"metrics[{i}]", name, "a registered metric name")


@dataclass
class SFTLoopConfig:
    max_epochs: int | None = 1
    """Epochs over the training data; None or -1: no epoch limit (max_steps must be set)."""
    max_steps: int = -1
    """Optimizer steps; -1: no step limit. Whichever of max_epochs / max_steps ends first wins. 0 trains
    nothing and validates the starting model once (logged at step 0): an evaluation run."""
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

    def __post_init__(self) -> None:
        if self.max_epochs is not None:
            checks.integer(self, "max_epochs", 0, also=(-1,))
        checks.integer(self, "max_steps", 0, also=(-1,))
        if self.max_steps == -1 and self.max_epochs in (None, -1):
            raise ConfigValueError("max_steps", self.max_steps, "set (>= 0) when max_epochs is null or -1: "
                                   "the run would have no end")
        checks.count_or_fraction(self, "val_check_interval", zero_ok=False)
        if self.save_interval is not None:
            checks.integer(self, "save_interval", 1)
        checks.count_or_fraction(self, "limit_val_batches", zero_ok=True)
        checks.count_or_fraction(self, "limit_train_batches", zero_ok=False)
        checks.number(self, "gradient_clip_val", 0.0)
        checks.integer(self, "log_every_n_steps", 1)


@dataclass
class TrainerSection:
    precision: str | int = "bf16"
    """``bf16`` (GPU default; fp32 master weights) or ``32``. CPU runs always use fp32."""
    accelerator: str = "auto"
    """``auto`` (GPU when available), ``gpu`` or ``cpu``."""
    max_time: str | int | dict[str, Any] | None = None
    """Wall-clock limit of the run: Lightning's ``DD:HH:MM:SS`` (``"00:03:55:00"``) or its mapping
    (``{hours: 3, minutes: 55}``, ``{seconds: 90}``). A bare number is refused: YAML reads an unquoted
    ``10:00:00:00`` as a base-60 number, which would silently be wrong. Counted from the start of ``sft train``
    (loading included). Before each step the trainer checks that the next step plus a checkpoint
    save still fit (longest step and longest save so far), and otherwise saves and stops, with
    ``stopped: max_time``: a cluster job ends cleanly with a checkpoint, and the same command in
    the next job resumes. No final ``.nemo`` is exported then (the run is not finished and the
    export could overrun the limit); the run that finishes exports it."""
    sft: SFTLoopConfig = field(default_factory=SFTLoopConfig)
    """The SFT loop."""

    def __post_init__(self) -> None:
        if str(self.precision) not in (*PRECISIONS, "16", "16-mixed", "bf16-true"):
            raise ConfigValueError("precision", self.precision, "one of " + ", ".join(PRECISIONS))
        checks.choice(self, "accelerator", ("auto", "gpu", "cpu"))
        if self.max_time is not None:
            checks.duration(self, "max_time")

    @property
    def max_time_seconds(self) -> float | None:
        return None if self.max_time is None else checks.seconds(self.max_time)


@dataclass
class CheckpointCallbackParams:
    save_top_k: int = 5
    """Keep the best k checkpoints by ``monitor`` (plus the newest, always); -1 keeps every one."""
    monitor: str = "val_loss"
    """Only validation loss is monitored."""
    mode: str = "min"
    """``min`` or ``max``."""
    save_nemo_on_train_end: bool = True
    """Write ``megatron_gpt_sft.nemo`` at the end."""

    def __post_init__(self) -> None:
        checks.integer(self, "save_top_k", 0, also=(-1,))
        checks.choice(self, "mode", ("min", "max"))
        checks.choice(self, "monitor", ("val_loss", "validation/loss"))


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
    def __post_init__(self) -> None:
        checks.text(self, "explicit_log_dir", optional=True)
        checks.text(self, "exp_dir", optional=True)
        checks.text(self, "name")


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
    sections: list[tuple[Any, Any]] = field(default_factory=list, init=False, repr=False)
    """Plugins' sections: (``ConfigSection``, its typed value), filled by the loader."""
    unused: list[Any] = field(default_factory=list, init=False, repr=False)
    """The reference's keys found in the config that change nothing here (``UnusedKey``)."""
    warnings: list[str] = field(default_factory=list, init=False, repr=False)
    """Lines to show the user once (a missing optional plugin)."""

    def __post_init__(self) -> None:
        checks.text(self, "name")

    def section(self, schema: type) -> Any:
        """A plugin's typed section (its defaults when the config does not mention it)."""
        for declared, value in self.sections:
            if declared.schema is schema:
                return value
        from sft_trainer.config.structured import from_dict

        return from_dict(schema, {})
