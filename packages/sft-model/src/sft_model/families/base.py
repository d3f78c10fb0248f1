"""What a model family is: Hugging Face config ⇄ ``ModelConfig`` and weight names both ways.

Weights are exchanged under *canonical* megatron-core names — the dist-checkpoint names without
the ``model.`` prefix, e.g. ``decoder.layers.0.self_attention.linear_qkv.layer_norm_weight`` — so a
family does not care whether the model was built with the local or the Transformer Engine spec.
Conversions are generators: one tensor in, one tensor out, so memory stays near one model copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from sft_model.config import ModelConfig

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch

# The local spec keeps its norms as separate modules; its sharded_state_dict_keys_map renames them
# onto the fused TE names in checkpoints. The same renaming turns state_dict names into canonical ones.
LOCAL_TO_CANONICAL = {
    ".input_layernorm.": ".self_attention.linear_qkv.layer_norm_",
    ".pre_mlp_layernorm.": ".mlp.linear_fc1.layer_norm_",
}

Getter = Callable[[str], "torch.Tensor"]


class ModelFamily(Protocol):
    """Registered through ``sft_register_model_families``."""

    name: str
    """What ``sft init --family`` accepts and what ``model_config.yaml`` records as ``family``."""
    hf_model_types: tuple[str, ...]
    """HF ``config.json`` ``model_type`` values this family converts."""

    def config_from_hf(self, hf: dict[str, Any]) -> ModelConfig:
        """A ModelConfig from an HF config.json (raises ConversionError for unsupported settings)."""
        ...

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        """The HF config.json for ``cfg``."""
        ...

    def default_config(self, **sizes: Any) -> ModelConfig:
        """A ModelConfig of this family for ``sft init`` (sizes as keyword overrides)."""
        ...

    def hf_to_canonical(self, cfg: ModelConfig, get: Getter, names: set[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Canonical tensors built from HF tensors (``get(name)`` reads one, ``names`` lists them)."""
        ...

    def canonical_to_hf(self, cfg: ModelConfig, get: Getter) -> Iterator[tuple[str, torch.Tensor]]:
        """HF tensors built from canonical tensors (vocabulary rows already cut to ``cfg.vocab_size``)."""
        ...


def canonical_name(local_name: str) -> str:
    for old, new in LOCAL_TO_CANONICAL.items():
        if old in local_name:
            return local_name.replace(old, new)
    return local_name


def interleave_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, groups: int) -> torch.Tensor:
    """megatron's fused QKV layout: for each query group g, its q heads, then k_g, then v_g.

    Works for weights [rows, hidden] and biases [rows]; rows are heads × head_dim.
    """
    d = q.shape[0] // heads
    tail = q.shape[1:]
    q = q.reshape(groups, heads // groups, d, *tail)
    k = k.reshape(groups, 1, d, *tail)
    v = v.reshape(groups, 1, d, *tail)
    import torch

    return torch.cat([q, k, v], dim=1).reshape(-1, *tail)


def split_qkv(qkv: torch.Tensor, heads: int, groups: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """Inverse of ``interleave_qkv``."""
    per = heads // groups
    tail = qkv.shape[1:]
    x = qkv.reshape(groups, per + 2, head_dim, *tail)
    q = x[:, :per].reshape(heads * head_dim, *tail)
    k = x[:, per].reshape(groups * head_dim, *tail)
    v = x[:, per + 1].reshape(groups * head_dim, *tail)
    return q.contiguous(), k.contiguous(), v.contiguous()


def pow2_divisor(vocab: int, limit: int = 128) -> int:
    """The reference converter's make_vocab_size_divisible_by: largest power of two ≤ limit dividing vocab."""
    d = limit
    while vocab % d:
        d //= 2
    return d


def hf_dtype_to_precision(hf: dict[str, Any]) -> str:
    dtype = hf.get("dtype") or hf.get("torch_dtype") or "float32"
    return {"bfloat16": "bf16", "float16": "16"}.get(str(dtype).replace("torch.", ""), "32")


def precision_to_hf_dtype(cfg: ModelConfig) -> str:
    return cfg.torch_dtype_name
