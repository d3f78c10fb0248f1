"""``prepare(workers=N)``: the same bytes as one worker (sample order, packing, stats), the same
located errors and skip counts, a bounded number of chunks in flight, one-line errors from workers."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sft_core import get_plugin_manager
from sft_data.config import DataConfig
from sft_data.errors import InvalidRecordsError, SftError
from sft_data.hookspecs import hookimpl
from sft_data.inputs import open_input
from sft_data.prepare import prepare
from sft_data.registries import DataRegistries
from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer
from sft_data.types import PromptResponse
from sft_data.workers import IN_FLIGHT_PER_WORKER, build_chunks

BAD_LINES = sum(1 for i in range(1200) if i % 97 == 5)
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "two", "plus", "two", "is", "four", "and", "five"]


def sentence(rng, low, high):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Prompt-response JSON Lines with bad lines, NeMo chat as Parquet, OpenAI messages as a JSON array."""
    rng = random.Random(7)
    directory = tmp_path_factory.mktemp("inputs")
    lines = []
    for i in range(1200):
        lines.append("not json" if i % 97 == 5 else json.dumps({"input": sentence(rng, 1, 30),
                                                                 "output": sentence(rng, 1, 40)}))
    (directory / "pr.jsonl").write_text("\n".join(lines) + "\n")
    chats = [{"system": "", "mask": "User", "conversations": [
        {"from": "User", "value": sentence(rng, 1, 20)}, {"from": "Assistant", "value": sentence(rng, 1, 200)}]}
        for _ in range(600)]
    pq.write_table(pa.Table.from_pylist(chats), directory / "chat.parquet", row_group_size=100)
    messages = [{"messages": [{"role": "user", "content": sentence(rng, 1, 20)},
                              {"role": "assistant", "content": sentence(rng, 1, 60)}]} for _ in range(500)]
    messages[17] = {"messages": [{"role": "user", "content": "no answer"}]}
    (directory / "messages.json").write_text(json.dumps(messages, indent=1))
    return directory


@pytest.fixture(scope="module")
def sp_tok(sp_tokenizer_path):
    return SentencePieceTokenizer(sp_tokenizer_path)


def run(files, tok, config, out, workers):
    result = prepare(files, tok, config, out, workers=workers)
    return result, {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_two_workers_write_the_same_bytes_as_one(inputs, sp_tok, tmp_path):
    files = [inputs / "pr.jsonl", inputs / "chat.parquet", inputs / "pr.jsonl"]
    config = DataConfig(max_seq_length=160, pack_size=256, packing_algorithm="first_fit_shuffle", skip_invalid=True,
                        overlong="drop", min_seq_length=4)
    one, one_files = run(files, sp_tok, config, tmp_path / "one", 1)
    two, two_files = run(files, sp_tok, config, tmp_path / "two", 2)
    assert sorted(one_files) == ["bin_offsets.npy", "header.json", "loss_mask.npy", "sample_index.npy",
                                 "seq_offsets.npy", "stats.json", "tokens.npy"]
    assert one_files == two_files
    assert one.problems == two.problems and one.bins == two.bins and one.chat == two.chat
    stats = json.loads(one_files["stats.json"])
    assert stats["skipped_invalid"] == 2 * BAD_LINES and stats["dropped"] > 0 and stats["truncated"] > 0
    assert stats["samples"] + stats["skipped_invalid"] + stats["dropped"] == 2 * 1200 + 600
    assert str(one.problems[0]) == f"{files[0]}:6: invalid JSON (Expecting value at column 1)"


def test_errors_and_skip_counts_do_not_depend_on_workers(inputs, sp_tok, tmp_path):
    files = [inputs / "pr.jsonl", inputs / "messages.json"]
    config = DataConfig(chat_template="chatml")
    messages = []
    for workers in (1, 2):
        with pytest.raises(InvalidRecordsError) as error:
            prepare(files, sp_tok, config, tmp_path / f"out{workers}", workers=workers)
        messages.append(str(error.value))
        assert not (tmp_path / f"out{workers}").exists()
    assert messages[0] == messages[1]
    lines = messages[0].splitlines()
    assert lines[0] == f"{files[0]}:6: invalid JSON (Expecting value at column 1)"
    assert f"{files[1]}:18: no assistant turn to train on" not in lines  # only the first ten are listed
    assert lines[-1] == f"{BAD_LINES + 1} invalid records (showing the first 10); pass --skip-invalid to skip them"
    skipped = [prepare(files, sp_tok, DataConfig(chat_template="chatml", skip_invalid=True), workers=w)
               for w in (1, 2)]
    assert skipped[0].stats == skipped[1].stats and skipped[0].stats["skipped_invalid"] == BAD_LINES + 1
    assert str(skipped[1].problems[-1]) == f"{files[1]}:18: no assistant turn to train on"


def test_a_settings_error_met_in_a_worker_is_the_same_one_line(inputs, sp_tok):
    config = DataConfig(chat_template="missing/template.jinja")
    messages = []
    for workers in (1, 2):
        with pytest.raises(SftError) as error:
            prepare([inputs / "messages.json"], sp_tok, config, workers=workers)
        messages.append(str(error.value))
    assert messages[0] == messages[1] == f"{inputs / 'messages.json'}:1: chat template file missing/template.jinja: not found"


class QAFormat:
    name = "qa"
    description = "question/answer"

    def detect(self, record):
        return "q" in record

    def parse(self, record, config):
        return PromptResponse({"input": record["q"], "output": record["a"]})


def registries_with(fmt):
    class Plugin:
        @hookimpl
        def sft_register_dataset_formats(self, register):
            register(fmt)

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(), name="qa-plugin")
    return DataRegistries.from_plugin_manager(pm)


def test_plugins_that_cannot_reach_a_worker_are_one_line(tmp_path, sp_tok):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": "hi", "a": "yo"}\n')

    class Local(QAFormat):  # defined in a function: cannot be pickled at all
        pass

    with pytest.raises(SftError) as error:
        prepare([data], sp_tok, DataConfig(), registries=registries_with(Local()), workers=2)
    assert str(error.value).startswith("--workers 2 sends the tokenizer, settings and plugins to worker processes, "
                                       "but they cannot be pickled") and str(error.value).endswith("use --workers 1")
    # defined in a test module that worker processes cannot import
    with pytest.raises(SftError, match=r"^a data worker could not load the tokenizer, settings and plugins \("):
        prepare([data], sp_tok, DataConfig(), registries=registries_with(QAFormat()), workers=2)
    assert prepare([data], sp_tok, DataConfig(), registries=registries_with(QAFormat()), workers=1).stats["samples"] == 1


def test_chunks_in_flight_are_bounded(inputs, sp_tok):
    """Reading never runs ahead of building by more than the window: memory does not grow with the data."""
    source = open_input(inputs / "pr.jsonl")
    read = 0

    def jobs():
        nonlocal read
        for chunk in source.chunks(rows=20):
            read += 1
            yield chunk, "prompt-response"

    ahead = []
    registries = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False))
    for done, _ in enumerate(build_chunks(jobs(), DataConfig(skip_invalid=True), sp_tok, registries, workers=2),
                             start=1):
        ahead.append(read - done)
    assert len(ahead) == 60 and max(ahead) <= 2 * IN_FLIGHT_PER_WORKER and max(ahead) > 0


def test_samples_go_to_disk_not_memory(inputs, sp_tok, tmp_path):
    result = prepare([inputs / "chat.parquet"], sp_tok, DataConfig(), tmp_path / "out", workers=2)
    assert result.samples is None and result.stats["samples"] == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the spill directory is gone


def test_what_workers_write_to_stderr_is_shown_once(capsys):
    from concurrent.futures import Future

    import numpy as np
    from sft_data import workers
    from sft_data.building import ChunkResult

    empty = np.zeros(0, dtype=np.int64)
    shown: set[str] = set()
    for text in ("warning: a\n", "warning: a\nwarning: b\n"):  # two workers, each warning on its own
        future = Future()
        future.set_result(ChunkResult("f", 1, 1, empty.astype(np.int32), empty.astype(np.uint8), empty, empty,
                                      empty.astype(bool), stderr=text))
        workers._result(future, shown)
    assert capsys.readouterr().err == "warning: a\nwarning: b\n"
