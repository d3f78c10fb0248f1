"""The ``model`` section of the training config: parallel sizes, batch sizes, seed, dropout,
optimizer and schedule, data and PEFT (NeMo-Aligner's ``model.*`` keys), range-checked as read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sft_core import SftError

from sft_trainer.config import checks
from sft_trainer.config.dataset_section import DataSection
from sft_trainer.config.structured import ConfigError, ConfigValueError


@dataclass
class SchedConfig:
    name: str = "CosineAnnealing"
    """Only CosineAnnealing (linear warmup from 0, constant phase, cosine decay to min_lr)."""
    warmup_steps: int = 10
    """Steps of linear warmup from 0 to lr."""
    constant_steps: int = 1000
    """The last steps of the run, held at min_lr after the cosine decay (NeMo's CosineAnnealing)."""
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
    """AdamW in every case. ``distributed_fused_adam`` and ``mcore_distributed_optim``: megatron-core's
    distributed optimizer, Adam's state sharded over the data-parallel ranks (1/DP each);
    ``adam``, ``adamw``, ``fused_adam``: the whole state on every rank (see ``sft_trainer.optim``)."""
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
class PeftConfig:
    peft_scheme: str = "none"
    """``none`` or a PEFT method registered by a plugin (``lora`` with sft-lora, whose settings are
    its own section, ``model.peft.lora_tuning``)."""
    restore_from_path: str | None = None
    """An adapter-only ``.nemo`` (what a PEFT run exports) whose adapter weights are loaded once the
    method has built the adapters, to train on from there or, with ``trainer.sft.max_steps=0``, to
    evaluate; its adapters must be the ones this run's settings build (same method, targets, rank)."""

    def __post_init__(self) -> None:
        checks.text(self, "peft_scheme")
        checks.text(self, "restore_from_path", optional=True)
        if self.restore_from_path is not None and self.peft_scheme == "none":
            raise ConfigValueError("peft_scheme", self.peft_scheme, "the adapters' PEFT method (e.g. lora) when "
                                   "model.peft.restore_from_path is set")


@dataclass
class ModelSection:
    restore_from_path: str | None = None
    """The ``.nemo`` to fine-tune."""
    resume_from_checkpoint: str | None = None
    """A training checkpoint directory (``…/checkpoints/megatron_gpt_sft--step=…``) to resume from
    instead of the newest in the run directory, also from another run's; it must verify as the
    automatic resume's candidates do, or the run stops with one line saying why."""
    save_nemo_on_validation_end: bool = False
    """At each checkpoint saved after a validation, also write ``checkpoints/megatron_gpt_sft.nemo``
    (replacing the previous one atomically), so the latest validated model is usable while training
    goes on. The reference's YAML enables it; off by default here because each export writes the
    whole model again (gigabytes and minutes per validation for large models) next to the checkpoint
    that already holds it."""
    tensor_model_parallel_size: int = 1
    """Tensor-parallel ranks."""
    pipeline_model_parallel_size: int = 1
    """Pipeline stages."""
    expert_model_parallel_size: int = 1
    """Expert-parallel ranks (mixture-of-experts models): each holds 1/this of every MoE layer's experts.
    They are data-parallel ranks too, so (processes / (TP × PP)) must be a multiple of it."""
    micro_batch_size: int | None = None
    """Rows per forward pass on one rank (default 1); the reference's place is
    ``model.data.train_ds.micro_batch_size``, which is honoured too (a different value in both is an error)."""
    global_batch_size: int | None = None
    """Rows per optimizer step over all data-parallel ranks and micro-batches (default 128); also read
    from ``model.data.train_ds.global_batch_size``, the reference's place."""
    answer_only_loss: bool = True
    """Train only on answers / assistant turns."""
    seed: int = 1234
    """Seed for initialisation, dropout, data order."""
    hidden_dropout: float = 0.0
    """Dropout after attention and MLP."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities."""
    moe_aux_loss_coeff: float | None = None
    """Weight of the routers' load-balancing loss in the objective (MoE models; logged unweighted as
    ``train/moe_aux_loss``); None keeps the base model's value (from HF ``router_aux_loss_coef``)."""
    seq_len_interpolation_factor: float | None = None
    """Linear RoPE position interpolation (positions divided by this factor) for sequences longer than
    the base model was trained on; None keeps the base model's value."""
    sequence_parallel: bool = False
    """With tensor parallelism, split the sequence dimension of norms, dropouts and residuals over
    the tensor-parallel ranks (megatron-core's sequence parallelism: the same results, less
    activation memory). At tensor_model_parallel_size=1 there is nothing to split it over: a
    no-op, said once when the run starts (the reference's YAMLs set it for any TP)."""
    activations_checkpoint_granularity: str | None = None
    """Activation recomputation: ``selective`` recomputes each layer's core attention in the
    backward pass, ``full`` whole layers (see ``activations_checkpoint_method``); null keeps every
    activation. Gradients are the same either way; memory falls, step time grows."""
    activations_checkpoint_method: str | None = None
    """With ``full``: ``uniform`` recomputes every group of ``activations_checkpoint_num_layers``
    layers from the group's input, ``block`` recomputes the first ``activations_checkpoint_num_layers``
    layers of each pipeline stage and keeps the rest."""
    activations_checkpoint_num_layers: int | None = None
    """With ``full``: layers per recomputed group (``uniform``) or per stage (``block``)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    data: DataSection = field(default_factory=DataSection)
    """Data."""
    peft: PeftConfig = field(default_factory=PeftConfig)
    """Parameter-efficient fine-tuning."""

    def __post_init__(self) -> None:
        checks.text(self, "restore_from_path", optional=True)
        checks.text(self, "resume_from_checkpoint", optional=True)
        self._batch_sizes()
        for key in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "expert_model_parallel_size",
                    "micro_batch_size", "global_batch_size"):
            checks.integer(self, key, 1)
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigValueError("global_batch_size", self.global_batch_size,
                                   f"a multiple of micro_batch_size ({self.micro_batch_size})")
        checks.integer(self, "seed", 0, 2**32 - 1)
        for key in ("hidden_dropout", "attention_dropout"):
            checks.number(self, key, 0.0, 1.0, high_open=True)
        if self.seq_len_interpolation_factor is not None:
            checks.number(self, "seq_len_interpolation_factor", 1.0)
        if self.moe_aux_loss_coeff is not None:
            checks.number(self, "moe_aux_loss_coeff", 0.0)
        self._recomputation()
        # the data settings sft-data checks itself (label placeholder, chat tokens, add_sep...), now
        # rather than after the model has loaded
        for name in ("train_ds", "validation_ds"):
            try:
                getattr(self.data, name).data_config(self.data, self.answer_only_loss, self.seed)
            except SftError as exc:
                raise ConfigError(f"model.data.{name}: {exc}") from None

    def _recomputation(self) -> None:
        checks.choice(self, "activations_checkpoint_granularity", (None, "selective", "full"))
        checks.choice(self, "activations_checkpoint_method", (None, "uniform", "block"))
        if self.activations_checkpoint_num_layers is not None:
            checks.integer(self, "activations_checkpoint_num_layers", 1)
        if self.activations_checkpoint_granularity == "full":
            if self.activations_checkpoint_method is None:
                raise ConfigValueError("activations_checkpoint_method", None,
                                       "'uniform' or 'block' with activations_checkpoint_granularity 'full'")
            if self.activations_checkpoint_num_layers is None:
                raise ConfigValueError("activations_checkpoint_num_layers", None,
                                       "an integer >= 1 with activations_checkpoint_granularity 'full'")

    def notes(self) -> list[str]:
        """Settings that are valid but change nothing in this run, each said once."""
        out = []
        if self.sequence_parallel and self.tensor_model_parallel_size == 1:
            out.append("model.sequence_parallel=true has no effect at tensor_model_parallel_size=1 (there are no "
                       "tensor-parallel ranks to split the sequence over)")
        if self.activations_checkpoint_granularity != "full":
            for key in ("activations_checkpoint_method", "activations_checkpoint_num_layers"):
                if getattr(self, key) is not None:
                    out.append(f"model.{key}={getattr(self, key)!r} has no effect with "
                               f"activations_checkpoint_granularity={self.activations_checkpoint_granularity!r} "
                               "(it applies to 'full')")
        return out

    def model_overrides(self) -> dict[str, Any]:
        """The base model's config values this training config replaces (as the reference's train
        script copies them onto the restored model)."""
        full = self.activations_checkpoint_granularity == "full"
        overrides: dict[str, Any] = {
            "hidden_dropout": self.hidden_dropout, "attention_dropout": self.attention_dropout,
            "sequence_parallel": self.sequence_parallel and self.tensor_model_parallel_size > 1,
            "activations_checkpoint_granularity": self.activations_checkpoint_granularity,
            "activations_checkpoint_method": self.activations_checkpoint_method if full else None,
            "activations_checkpoint_num_layers": self.activations_checkpoint_num_layers if full else None,
        }
        if self.seq_len_interpolation_factor is not None:
            overrides["seq_len_interpolation_factor"] = self.seq_len_interpolation_factor
        if self.moe_aux_loss_coeff is not None:
            overrides["moe_aux_loss_coeff"] = self.moe_aux_loss_coeff
        return overrides

    def _batch_sizes(self) -> None:
        """One value per batch size, from ``model.*`` or the reference's ``model.data.train_ds.*``."""
        for key, default in (("global_batch_size", 128), ("micro_batch_size", 1)):
            ours, reference = getattr(self, key), getattr(self.data.train_ds, key)
            if ours is not None and reference is not None and ours != reference:
                raise ConfigError(f"model.{key}={ours} and model.data.train_ds.{key}={reference} disagree; "
                                  f"set one of them")
            value = next((v for v in (ours, reference) if v is not None), default)
            setattr(self, key, value)
            setattr(self.data.train_ds, key, value)
