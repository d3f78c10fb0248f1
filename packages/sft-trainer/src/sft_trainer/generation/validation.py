"""Validation-time generation metrics (``trainer.sft.inference_metrics``).

Prompts and references come from the prepared validation samples themselves: a sample's prompt
is its tokens before the first trained token, its reference the first trained span (the answer,
or the first assistant turn), with end markers removed. So the model is scored on exactly the
text it was validated on, whatever the format or template.

Every rank generates the same prompts: tensor-parallel ranks must run the forward together, and
data-parallel ranks get identical greedy answers, so no reduction is needed. Pipeline-parallel
runs skip the metrics (generation needs the whole model in one stage) with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sft_data.tokenizers.base import Tokenizer

from sft_trainer.generation.prompts import PromptBuilder
from sft_trainer.generation.runner import complete, cut_at_stop


def prompt_and_reference(ids: Sequence[int], mask: Sequence[bool]) -> tuple[list[int], list[int]] | None:
    """(prompt ids, first trained span's ids) of one stored sample; None when nothing is trained."""
    start = next((j for j, m in enumerate(mask) if m), None)
    if start is None or start == 0:
        return None
    end = next((j for j in range(start, len(mask)) if not mask[j]), len(mask))
    return [int(i) for i in ids[:start]], [int(i) for i in ids[start:end]]


class InferenceEvaluator:
    """Answers a fixed set of validation prompts and scores them with the configured metrics."""

    def __init__(self, model, settings, metrics: Sequence[Any], dataset, tokenizer: Tokenizer, data: dict[str, Any],
                 registries, pipeline_parallel: int):
        from sft_model.sampling import SamplingParams

        self.model = model
        """The ``sft_model.ModelHandle`` being trained (its parameters are the training ones)."""
        self.settings, self.metrics, self.tokenizer = settings, list(metrics), tokenizer
        self.enabled = pipeline_parallel == 1
        self.params = SamplingParams(max_new_tokens=settings.max_new_tokens)
        self.stop_ids, self.stop_strings = PromptBuilder(data, tokenizer, registries).stop_markers()
        self.prompts: list[list[int]] = []
        self.references: list[str] = []
        for i in range(dataset.num_sequences):
            if len(self.prompts) == settings.num_samples:
                break
            pair = prompt_and_reference(*dataset.sequence(i))
            if pair is None:
                continue
            prompt, answer = pair
            answer = [t for t in answer if t not in self.stop_ids]
            self.prompts.append(prompt)
            self.references.append(cut_at_stop(tokenizer.decode(answer), self.stop_strings)[0])

    def evaluate(self) -> dict[str, float]:
        """``{"validation/<metric>": mean score}`` for the current weights (empty when disabled)."""
        if not self.enabled or not self.prompts:
            return {}
        answers = []
        size = self.settings.batch_size
        for start in range(0, len(self.prompts), size):
            answers += complete(self.model, self.tokenizer, self.prompts[start:start + size], self.params,
                                stop_ids=self.stop_ids, stop_strings=self.stop_strings)
        return {f"validation/{metric.name}": sum(metric.score(a.text, r) for a, r in
                                                 zip(answers, self.references, strict=True)) / len(answers)
                for metric in self.metrics}


def build_evaluator(cfg, pm, model, dataset, tokenizer: Tokenizer, registries, topo) -> InferenceEvaluator | None:
    """The evaluator for ``cfg.trainer.sft.inference_metrics``, or None when no metric is asked for."""
    from sft_core import collect

    from sft_trainer.config.structured import to_dict

    settings = cfg.trainer.sft.inference_metrics
    if not settings.metrics or dataset is None:
        return None
    if getattr(model, "sequence_parallel", False):  # generation decodes one token at a time: nothing to split
        if topo.is_main:
            print("warning: trainer.sft.inference_metrics cannot run under sequence parallelism (MoE models with "
                  "tensor parallelism train with it); skipped")
        return None
    registry = collect(pm, "sft_register_metrics", "generation metric")
    metrics = [registry.get(name) for name in settings.metrics]
    evaluator = InferenceEvaluator(model, settings, metrics, dataset, tokenizer, to_dict(cfg.model.data), registries,
                                   topo.pp_size)
    if not evaluator.enabled and topo.is_main:
        print("warning: trainer.sft.inference_metrics needs pipeline_model_parallel_size 1; skipped")
    return evaluator
