"""Norms for the local layer spec that megatron-core's local modules cannot give.

``SequenceParallelNorm``: without Apex the local spec's norms are ``WrappedTorchNorm``, which refuses
sequence parallelism. Each tensor-parallel rank then normalises only its slice of the sequence, so
the norm weights' gradients must be summed over the tensor-parallel group, and megatron sums exactly
the parameters marked ``sequence_parallel`` (as Apex's and Transformer Engine's norms mark theirs)
in ``finalize_model_grads``. It builds the same torch ``LayerNorm``/``RMSNorm``, marked.

``RMSNorm``: weights stored zero-centred (the norm multiplies by 1 + w, as Gemma stores them),
computed in fp32 like transformers' RMSNorms. With the Transformer Engine spec, TE's own norms read
``layernorm_zero_centered_gamma`` from the config; this class is then used only for the
post-sublayer norms, which TE's spec has no slot for.

Both take megatron's norm constructor arguments, so a ``ModuleSpec`` selects them for the layer
norms, the q/k norms, the post-sublayer norms and the final norm (``sft_model.specs``).
"""

from __future__ import annotations

import torch


class SequenceParallelNorm:
    """Builds ``torch.nn.LayerNorm`` or ``torch.nn.RMSNorm`` (``config.normalization``) with its
    parameters marked for the tensor-parallel gradient sum when sequence parallelism is on."""

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **kwargs):
        norm_cls = torch.nn.RMSNorm if config.normalization == "RMSNorm" else torch.nn.LayerNorm
        norm = norm_cls(normalized_shape=hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm


class RMSNorm(torch.nn.Module):
    """x · rsqrt(mean(x²) + eps) · (1 + w) with zero-centred weights, · w otherwise; fp32 inside."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_ignored):
        super().__init__()
        if config.normalization != "RMSNorm":
            raise ValueError(f"sft_model.norms.RMSNorm cannot stand in for {config.normalization}")
        self.eps = eps
        self.zero_centered = bool(config.layernorm_zero_centered_gamma)
        init = torch.zeros if self.zero_centered else torch.ones
        device = None if config.use_cpu_initialization else torch.cuda.current_device()
        self.weight = torch.nn.Parameter(init(hidden_size, dtype=config.params_dtype, device=device))
        # megatron's grad reductions look for this flag on norm weights under sequence parallelism
        self.weight.sequence_parallel = config.sequence_parallel

    def sharded_state_dict(self, prefix: str = "", sharded_offsets=(), metadata=None) -> dict:
        """Replicated over tensor- and data-parallel ranks. Without this method megatron's ``MLP``
        would shard a plain child module with no tensor-parallel group, and every TP rank would then
        claim to hold the main copy (a checkpoint that fails validation)."""
        from megatron.core import parallel_state as ps
        from megatron.core.transformer.utils import (
            ensure_metadata_has_dp_cp_group,
            make_sharded_tensors_for_checkpoint,
        )

        metadata = ensure_metadata_has_dp_cp_group(metadata)
        return make_sharded_tensors_for_checkpoint(
            self.state_dict(prefix="", keep_vars=True), prefix, {}, sharded_offsets,
            tp_group=ps.get_tensor_model_parallel_group(), dp_cp_group=metadata["dp_cp_group"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        w = self.weight.float()
        return (h * (1.0 + w if self.zero_centered else w)).to(x.dtype)
