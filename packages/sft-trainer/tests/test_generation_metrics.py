"""Validation-time generation metrics through ``sft_register_metrics`` (built-ins and a test
plugin's), the run report written by ``train()``, and the exported .nemo's stored template giving
``sft generate`` the very prompt ids the model was validated on."""

from __future__ import annotations

import json

import pytest

from .test_train_hooks import REPO, hookimpl, plugin_manager

NUM_SAMPLES = 4


def test_builtin_metric_scores():
    from sft_trainer.generation.metrics import ExactMatch, TokenF1

    assert ExactMatch().score(" A cherry is red.\n", "A cherry is red.") == 1.0
    assert ExactMatch().score("A cherry is red", "A cherry is red.") == 0.0
    assert TokenF1().score("a cherry is red.", "A cherry is green.") == pytest.approx(0.75)
    assert TokenF1().score("", "") == 1.0 and TokenF1().score("x", "") == 0.0


def test_prompt_and_reference_split_at_the_first_trained_span():
    from sft_trainer.generation.validation import prompt_and_reference

    assert prompt_and_reference([5, 6, 7, 8, 9, 2], [False, False, True, True, False, True]) == ([5, 6], [7, 8])
    assert prompt_and_reference([5, 6], [False, False]) is None


class AnswerLength:
    """A third-party metric: records what it is given and scores the answer's length."""

    name = "answer_chars"

    def __init__(self):
        self.calls = []

    def score(self, prediction, reference):
        self.calls.append((prediction, reference))
        return float(len(prediction))


class MetricPlugin:
    def __init__(self):
        self.metric = AnswerLength()

    @hookimpl
    def sft_register_metrics(self, register):
        register(self.metric)


def test_inference_metrics_are_logged_and_the_nemo_prompts_match(tiny_nemo, train_config, tmp_path):
    nemo, config = tiny_nemo, train_config
    from sft_trainer.loggers.jsonl import read_metrics
    from sft_trainer.run import train

    plugin = MetricPlugin()
    cfg = config(nemo, tmp_path / "run", "trainer.sft.inference_metrics.metrics=[exact_match,token_f1,answer_chars]",
                 f"trainer.sft.inference_metrics.num_samples={NUM_SAMPLES}",
                 "trainer.sft.inference_metrics.max_new_tokens=6", "trainer.sft.inference_metrics.batch_size=3",
                 'model.data.validation_ds.prompt_template="Q: {input}\\nA: {output}"')
    result = train(cfg, plugin_manager(plugin))
    validations = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "validation/loss" in r]
    assert [r["step"] for r in validations] == [2, 4]
    for record in validations:
        assert 0.0 <= record["validation/exact_match"] <= record["validation/token_f1"] <= 1.0
        assert record["validation/answer_chars"] >= 0
    # Two validations × NUM_SAMPLES answers; references are the validation answers, in file order.
    records = [json.loads(line) for line in (REPO / "examples/data/val.jsonl").read_text().splitlines()]
    expected = [r["output"] for r in records[:NUM_SAMPLES]]
    assert [ref for _, ref in plugin.metric.calls] == expected * 2
    mean = sum(len(p) for p, _ in plugin.metric.calls[NUM_SAMPLES:]) / NUM_SAMPLES
    assert validations[1]["validation/answer_chars"] == pytest.approx(mean)
    assert (tmp_path / "run" / "report.png").read_bytes()[:4] == b"\x89PNG"

    from sft_data.registries import DataRegistries
    from sft_trainer.generation.runner import Generator
    from sft_trainer.generation.validation import prompt_and_reference

    gen = Generator(result.nemo_path, DataRegistries.from_plugin_manager(plugin_manager()))
    assert not gen.prompts.chat and gen.stop_ids == [gen.tokenizer.eos_id]
    from sft_data.store import PreparedDataset

    cached = [PreparedDataset(d) for d in (tmp_path / "run" / "data_cache").iterdir() if d.is_dir()]
    val = next(d for d in cached if d.num_sequences == len(records))
    for i in range(NUM_SAMPLES):
        prompt, _ = prompt_and_reference(*val.sequence(i))
        built = gen.prompts.from_record(records[i], f"val.jsonl:{i + 1}")
        assert built.ids == prompt and built.reference == records[i]["output"]
