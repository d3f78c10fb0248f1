"""Token-level generation: a batch of prompts (token ids) in, continuations out.

The KV cache is megatron-core's own ``StaticInferenceContext`` passed to ``GPTModel.forward`` as
``inference_context``: the prompt is run once (prefill), then one token per step reads the cached
keys/values (``Attention._adjust_key_value_for_inference``). On the CPU the cache allocation needs
the ``megatron.core.transformer.attention`` shim in ``megatron_cpu``.

Prompts of different lengths are left-padded. Padding never changes a real token's result:
- pad keys are masked out of every attention row (an explicit ``attention_mask``; our SDPA core
  attention honours it in prefill and decode alike);
- learned absolute positions come from ``position_ids``, which start at 0 at each row's first real
  token; rotary embeddings in the static cache are applied by cache index, i.e. shifted by the
  padding for that row, which leaves q·k unchanged because RoPE depends only on the distance
  between positions.
Transformer Engine's attention ignores an arbitrary mask under the causal mask type, so with the
TE spec prompts of different lengths run one at a time instead of padded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sft_model.errors import ModelError
from sft_model.sampling import SamplingParams, next_tokens, penalize_repetitions

StopCheck = Callable[[int, list[int]], bool]
"""``stop(row, new_ids)`` → True to end that row (stop strings); called after each new token."""
OnToken = Callable[[int, int], None]
"""``on_token(row, token_id)`` for every generated token that is kept (streaming)."""


@dataclass
class Generation:
    tokens: list[int]
    """The generated ids, without the stop token that ended them."""
    finish_reason: str
    """``stop`` (a stop id or ``stop`` check) or ``length`` (max_new_tokens or the model's limit)."""


def _logits(model, vocab: int, tokens, position_ids, mask, context) -> torch.Tensor:
    """Last-position logits [b, vocab] over the real vocabulary (TP shards gathered)."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    logits = model(tokens, position_ids, attention_mask=mask, inference_context=context)[:, -1:]
    if ps.get_tensor_model_parallel_world_size() > 1:
        logits = gather_from_tensor_model_parallel_region(logits)
    return logits[:, 0, :vocab].float()


def _blocked(valid: torch.Tensor, queries: int) -> torch.Tensor | None:
    """megatron's attention mask (True = may not attend) for the last ``queries`` positions of rows
    whose real tokens are ``valid`` [b, s]; None when nothing is padded (plain causal attention)."""
    if bool(valid.all()):
        return None
    s = valid.shape[1]
    pad_keys = ~valid[:, None, None, :]
    causal = torch.ones(s, s, dtype=torch.bool, device=valid.device).triu(1)[s - queries:]
    blocked = pad_keys | causal
    # A pad query would see no key at all (softmax of nothing = NaN, which the cache would carry
    # into later layers' keys); letting it see itself keeps it finite and touches no real token.
    diagonal = torch.eye(s, dtype=torch.bool, device=valid.device)[s - queries:]
    return blocked & ~diagonal


@torch.no_grad()
def generate(model, prompts: Sequence[Sequence[int]], params: SamplingParams, *,
             stop_ids: Sequence[int] = (), pad_id: int = 0, use_cache: bool = True,
             stop: StopCheck | None = None, on_token: OnToken | None = None,
             seeds: Sequence[int] | None = None) -> list[Generation]:
    """Continue each prompt until a stop id, ``stop``, ``max_new_tokens`` or the model's length.

    ``model`` is a ``LoadedModel`` or a ``ModelHandle``; pipeline parallelism is not supported. ``seeds`` (one per prompt) make sampling reproducible per prompt, whatever the batch.
    ``use_cache=False`` recomputes the whole sequence every step (the reference path for tests).
    """
    from megatron.core import parallel_state as ps

    from sft_model.handle import as_handle
    from sft_model.parallel import ensure_parallel_state

    ensure_parallel_state()
    if ps.get_pipeline_model_parallel_world_size() != 1:
        raise ModelError("generation runs without pipeline parallelism (PP=1)")
    handle = as_handle(model)
    gpt = handle.module
    if handle.sequence_parallel:
        raise ModelError("generation runs without sequence parallelism (load the model without it)")
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ModelError("every prompt needs at least one token")
    if handle.use_te and len({len(p) for p in prompts}) > 1:
        return [generate(handle, [p], params, stop_ids=stop_ids, pad_id=pad_id, use_cache=use_cache, stop=stop,
                         on_token=None if on_token is None else (lambda _, t, i=i: on_token(i, t)),
                         seeds=None if seeds is None else [seeds[i]])[0]
                for i, p in enumerate(prompts)]
    was_training = gpt.training
    gpt.eval()
    try:
        return _generate(gpt, handle.vocab_size, prompts, params, set(stop_ids), pad_id, use_cache, stop, on_token,
                         seeds)
    finally:
        gpt.train(was_training)


def _generate(gpt, vocab: int, prompts, params: SamplingParams, stop_ids: set[int], pad_id: int, use_cache: bool,
              stop: StopCheck | None, on_token: OnToken | None, seeds) -> list[Generation]:
    from megatron.core.inference.contexts import StaticInferenceContext

    device = next(gpt.parameters()).device
    if any(t < 0 or t >= vocab for p in prompts for t in p):
        raise ModelError(f"prompt token ids must lie in [0, {vocab})")
    b, longest = len(prompts), max(len(p) for p in prompts)
    limit = gpt.max_sequence_length
    if longest >= limit:
        raise ModelError(f"a prompt has {longest} tokens; the model takes at most {limit} (prompt + output)")
    total = min(longest + params.max_new_tokens, limit)
    pads = torch.tensor([longest - len(p) for p in prompts], device=device)
    seq = torch.full((b, total), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(b, total, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        seq[i, longest - len(p):longest] = torch.tensor(list(p), dtype=torch.long)
        valid[i, longest - len(p):longest] = True
    positions = (torch.arange(total, device=device)[None, :] - pads[:, None]).clamp(min=0)
    generators = None
    if seeds is not None and not params.greedy:
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    context = StaticInferenceContext(b, total) if use_cache else None
    logits = _logits(gpt, vocab, seq[:, :longest], positions[:, :longest], _blocked(valid[:, :longest], longest), context)
    outputs: list[list[int]] = [[] for _ in prompts]
    reasons: list[str | None] = [None] * b
    for cur in range(longest, total):
        logits = penalize_repetitions(logits, seq[:, :cur], valid[:, :cur], params.repetition_penalty)
        chosen = next_tokens(logits, params, generators)
        for i in range(b):
            if reasons[i] is not None:
                continue
            token = int(chosen[i])
            if token in stop_ids:
                reasons[i] = "stop"
                continue
            outputs[i].append(token)
            seq[i, cur], valid[i, cur] = token, True
            if on_token is not None:
                on_token(i, token)
            if stop is not None and stop(i, outputs[i]):
                reasons[i] = "stop"
        if all(r is not None for r in reasons) or cur + 1 == total:
            break
        # Finished rows keep feeding (masked) pads so the batch stays rectangular.
        if context is not None:
            context.sequence_len_offset = cur
            logits = _logits(gpt, vocab, seq[:, cur:cur + 1], positions[:, cur:cur + 1], _blocked(valid[:, :cur + 1], 1),
                             context)
        else:
            logits = _logits(gpt, vocab, seq[:, :cur + 1], positions[:, :cur + 1], _blocked(valid[:, :cur + 1], cur + 1),
                             None)
    return [Generation(out, reason or "length") for out, reason in zip(outputs, reasons, strict=True)]
