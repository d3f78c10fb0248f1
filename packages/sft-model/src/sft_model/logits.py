"""``compute_logits``: a forward pass for callers that only want logits (tests, evaluation, export checks)."""

from __future__ import annotations

import torch

from sft_model.errors import ModelError


@torch.no_grad()
def compute_logits(model, token_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[b, s] token ids → [b, s, vocab] float logits over the real (unpadded) vocabulary.

    ``model`` is a ``LoadedModel`` or a ``ModelHandle``.
    Sets up a one-process parallel state if none exists. Under tensor parallelism every rank gets
    the full logits (the vocabulary shards are gathered); pipeline parallelism is not supported here.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from sft_model.handle import as_handle
    from sft_model.parallel import ensure_parallel_state

    ensure_parallel_state()
    if ps.get_pipeline_model_parallel_world_size() != 1:
        raise ModelError("compute_logits runs without pipeline parallelism (PP=1)")
    handle = as_handle(model)
    model, vocab = handle.module, handle.vocab_size
    token_ids = torch.as_tensor(token_ids, dtype=torch.long)
    if token_ids.dim() != 2:
        raise ModelError(f"token_ids must be [batch, seq], got shape {tuple(token_ids.shape)}")
    tp = ps.get_tensor_model_parallel_world_size()
    if handle.sequence_parallel and token_ids.shape[1] % tp:
        raise ModelError(f"under sequence parallelism the sequence length ({token_ids.shape[1]}) must be a multiple "
                         f"of the tensor-parallel size {tp}")
    if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= vocab):
        raise ModelError(f"token ids must lie in [0, {vocab})")
    device = next(model.parameters()).device
    token_ids = token_ids.to(device)
    if position_ids is None:
        position_ids = torch.arange(token_ids.shape[1], device=device).expand_as(token_ids)
    was_training = model.training
    model.eval()
    try:
        logits = model(token_ids, position_ids.to(device), attention_mask=attention_mask)
    finally:
        model.train(was_training)
    if ps.get_tensor_model_parallel_world_size() > 1:
        logits = gather_from_tensor_model_parallel_region(logits)
    return logits[..., :vocab].float()
