"""Layer norms for megatron's local layer spec that also work with sequence parallelism.

Without Apex, the local spec's norms are ``WrappedTorchNorm``, which refuses sequence parallelism:
each tensor-parallel rank then normalises only its slice of the sequence, so the norm weights'
gradients must be summed over the tensor-parallel group, and megatron sums exactly the parameters
marked ``sequence_parallel`` (as Apex's and Transformer Engine's norms mark theirs) in
``finalize_model_grads``. This is the same torch ``LayerNorm``/``RMSNorm``, marked; swapped into the
spec through ``ModuleSpec`` like the SDPA core attention.
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
