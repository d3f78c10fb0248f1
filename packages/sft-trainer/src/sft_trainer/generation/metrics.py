"""Built-in generation metrics, registered through ``sft_register_metrics`` like a plugin's.

Both compare a generated answer with the reference text after trimming surrounding whitespace;
token F1 (SQuAD's) also lower-cases and splits on whitespace, giving partial credit.
"""

from __future__ import annotations

from collections import Counter

from sft_core import hookimpl


class ExactMatch:
    name = "exact_match"

    def score(self, prediction: str, reference: str) -> float:
        return float(prediction.strip() == reference.strip())


class TokenF1:
    name = "token_f1"

    def score(self, prediction: str, reference: str) -> float:
        pred, ref = prediction.lower().split(), reference.lower().split()
        if not pred or not ref:
            return float(pred == ref)
        common = sum((Counter(pred) & Counter(ref)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(pred), common / len(ref)
        return 2 * precision * recall / (precision + recall)


@hookimpl
def sft_register_metrics(register):
    register(ExactMatch())
    register(TokenF1())
