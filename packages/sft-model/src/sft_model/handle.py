"""``ModelHandle``: what ``build_model`` returns — this process's part of a megatron-core GPTModel
and what callers need to know about it. Nothing is attached to megatron's module itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft_model.config import ModelConfig


@dataclass(frozen=True)
class ModelHandle:
    module: Any
    """This pipeline stage's ``GPTModel`` (unwrapped; training wraps it in megatron's DDP)."""
    config: ModelConfig
    """The config it was built from."""
    vocab_size: int
    """The tokenizer's vocabulary: logits beyond it belong to padded rows and are -inf."""
    use_te: bool
    """Attention runs in Transformer Engine (TE spec on a GPU): packed rows go as THD, and TE ignores
    arbitrary masks. False on the local spec, and for soft-capped attention (sft's SDPAttention)."""
    sequence_parallel: bool = False
    """Built for sequence-parallel training (activations split over the tensor-parallel ranks)."""

    @property
    def chunks(self) -> list[Any]:
        """The model chunks of this stage, as megatron's schedules take them (no virtual pipeline: one)."""
        return [self.module]

    @property
    def padded_vocab_size(self) -> int:
        return self.config.padded_vocab_size(self.vocab_size)


def as_handle(model: Any) -> ModelHandle:
    """A ``ModelHandle`` from a handle or from anything that carries one (a ``LoadedModel``)."""
    handle = model if isinstance(model, ModelHandle) else getattr(model, "handle", None)
    if not isinstance(handle, ModelHandle):
        raise TypeError(f"expected a ModelHandle or a LoadedModel, got {type(model).__name__}")
    return handle
