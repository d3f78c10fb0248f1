"""A run on NeMo chat data stores the chat template and the effective ``chat_prompt_tokens`` it was
trained with (the reference stored ``chat_prompt_tokens: {}`` when the config left the defaults), and
``sft generate`` builds from them exactly the prompt ids the model was trained on."""

from __future__ import annotations

import json

import yaml

from .test_train_hooks import REPO, plugin_manager

CHAT = REPO / "examples" / "data" / "chat.jsonl"
DEFAULT_TOKENS = {"system_turn_start": "<extra_id_0>", "turn_start": "<extra_id_1>", "label_start": "<extra_id_2>",
                  "end_of_turn": "\n", "end_of_name": "\n"}


def last_answer_start(mask: list[bool]) -> int:
    """Where the last run of trained tokens (the last answer, its end of turn, the trailing turn_start) starts."""
    end = len(mask)
    while not mask[end - 1]:
        end -= 1
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return start


def test_chat_run_stores_its_prompt_tokens_and_generate_prompts_match_training(tiny_nemo, train_config, tmp_path):
    import tarfile

    from sft_data.registries import DataRegistries
    from sft_data.store import PreparedDataset
    from sft_model.nemo.inspect import describe
    from sft_trainer.generation.runner import Generator
    from sft_trainer.run import train

    cfg = train_config(tiny_nemo, tmp_path / "run", f"model.data.train_ds.file_path={CHAT}",
                       f"model.data.validation_ds.file_path={CHAT}", "model.data.train_ds.max_seq_length=96",
                       "model.data.validation_ds.max_seq_length=96", "trainer.sft.max_steps=2")
    assert cfg.model.data.chat_prompt_tokens == {}  # left to the defaults
    result = train(cfg, plugin_manager())

    with tarfile.open(result.nemo_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model_config.yaml"))
        stored = yaml.safe_load(tar.extractfile(member).read())["data"]
    assert stored["chat"] is True and stored["chat_template"] == "nemo"
    assert stored["chat_prompt_tokens"] == DEFAULT_TOKENS
    shown = describe(result.nemo_path)["prompt_template"]
    assert shown == {"chat": True, "template": {"chat_template": "nemo", "chat_prompt_tokens": DEFAULT_TOKENS}}

    gen = Generator(result.nemo_path, DataRegistries.from_plugin_manager(plugin_manager()))
    assert gen.prompts.chat
    cached = [PreparedDataset(d) for d in (tmp_path / "run" / "data_cache").iterdir() if d.is_dir()]
    trained = cached[0]
    records = [json.loads(line) for line in CHAT.read_text(encoding="utf-8").splitlines()]
    assert trained.num_sequences == len(records)
    for i in range(8):
        ids, mask = trained.sequence(i)
        ids, mask = ids.tolist(), mask.tolist()
        prompt = gen.prompts.from_record(records[i], f"chat.jsonl:{i + 1}")
        assert prompt.ids == ids[: last_answer_start(mask)]
        assert prompt.reference == records[i]["conversations"][-1]["value"]
