"""``FamilyGPTModel``: megatron-core's ``GPTModel`` plus the two model-level pieces of Gemma that no
layer spec can reach, because ``GPTModel`` builds its embedding and output layer itself:

- the input embeddings multiplied by ``embedding_multiplier`` (Gemma: √hidden, as a scalar of the
  embeddings' dtype, so bf16 rounds it as transformers does), in ``_preprocess`` where megatron
  makes the decoder input — only on the first pipeline stage and never for a given ``decoder_input``;
- final-logit soft-capping c·tanh(z/c) in ``_scale_logits``, the hook megatron applies to the
  output layer's logits before both the loss and the returned logits (elementwise, so it works on
  tensor-parallel vocabulary shards). Padded vocabulary rows stay at −inf.

The builder uses this class only when one of the two is set; otherwise the model is plain ``GPTModel``.
"""

from __future__ import annotations

import torch
from megatron.core.models.gpt import GPTModel
from megatron.core.utils import WrappedTensor


class FamilyGPTModel(GPTModel):
    def __init__(self, *args, embedding_multiplier: float | None = None, final_logit_softcapping: float | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.embedding_multiplier = embedding_multiplier
        self.final_logit_softcapping = final_logit_softcapping

    def _preprocess(self, input_ids, position_ids, decoder_input=None, *args, **kwargs):
        given = decoder_input is not None
        out = super()._preprocess(input_ids, position_ids, decoder_input, *args, **kwargs)
        if given or not self.pre_process or self.embedding_multiplier is None:
            return out
        hidden = out[0]
        wrapped = isinstance(hidden, WrappedTensor)
        tensor = hidden.unwrap() if wrapped else hidden
        tensor = tensor * torch.tensor(self.embedding_multiplier, dtype=tensor.dtype, device=tensor.device)
        return (WrappedTensor(tensor) if wrapped else tensor, *out[1:])

    def _scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        logits = super()._scale_logits(logits)
        cap = self.final_logit_softcapping
        if cap is None:
            return logits
        capped = torch.tanh(logits / cap) * cap
        return torch.where(torch.isneginf(logits), logits, capped)
