"""Choosing the next token from logits: greedy, or sampling with temperature / top-k / top-p, and
a repetition penalty. The order of the steps is ``transformers``' (penalty, temperature, top-k,
top-p), so the same settings mean the same thing in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sft_model.errors import ModelError


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``greedy`` wins over every sampling setting; ``temperature=0`` means
    greedy, as in every serving tool (vLLM, transformers, OpenAI's API)."""

    max_new_tokens: int = 128
    greedy: bool = True
    temperature: float = 1.0
    """Divides the logits before sampling; below 1 sharpens, above 1 flattens; 0 is greedy."""
    top_k: int = 0
    """Sample only among the k most likely tokens; 0 keeps all."""
    top_p: float = 1.0
    """Sample only among the most likely tokens whose probabilities sum to top_p (nucleus)."""
    repetition_penalty: float = 1.0
    """>1 discourages tokens already in the prompt or output (CTRL's penalty, as transformers)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ModelError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.temperature == 0:
            object.__setattr__(self, "greedy", True)  # the limit of dividing by t -> 0: the argmax
        if self.top_k < 0:
            raise ModelError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ModelError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ModelError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


def penalize_repetitions(logits: torch.Tensor, history: torch.Tensor, valid: torch.Tensor,
                         penalty: float) -> torch.Tensor:
    """Scale the logits of tokens seen in ``history`` [b, t] (where ``valid``): positive ones are
    divided by ``penalty``, negative ones multiplied, so a seen token always becomes less likely."""
    if penalty == 1.0:
        return logits
    # Padding positions point at token 0 but must not penalise it: gather, then scatter back only
    # the valid ones (a token seen twice is penalised once, as in transformers).
    index = torch.where(valid, history, torch.zeros_like(history))
    seen = logits.gather(1, index)
    scaled = torch.where(seen < 0, seen * penalty, seen / penalty)
    out = logits.clone()
    out.scatter_(1, index, torch.where(valid, scaled, out.gather(1, index)))
    return out


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p: removed tokens get -inf."""
    logits = logits / params.temperature
    if params.top_k > 0:
        k = min(params.top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p; the most likely always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, params: SamplingParams,
                generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
    """[b, vocab] float logits → [b] token ids.

    Each row samples from its own generator (when given) so a prompt's sample does not depend on
    which other prompts share its batch.
    """
    if params.greedy:
        return logits.argmax(-1)
    probs = filter_logits(logits.float(), params).softmax(-1)
    rows = []
    for i in range(probs.shape[0]):
        gen = generators[i] if generators is not None else None
        rows.append(torch.multinomial(probs[i], 1, generator=gen))
    return torch.cat(rows)
