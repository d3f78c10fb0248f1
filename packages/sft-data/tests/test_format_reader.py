"""A format's own ``read(path)``: non-JSONL files go through it when ``--format`` names the format."""

from __future__ import annotations

from sft_core import get_plugin_manager
from sft_data.config import DataConfig
from sft_data.errors import RecordError, RecordProblem
from sft_data.hookspecs import hookimpl
from sft_data.prepare import tokenize_files
from sft_data.records import Record
from sft_data.registries import DataRegistries
from sft_data.types import PromptResponse


class TabFormat:
    """``question<TAB>answer`` lines: a format whose files are not JSON Lines."""

    name = "tab"
    description = "question<TAB>answer per line"

    def read(self, path):
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2:
                    yield RecordProblem(str(path), lineno, f"expected 2 tab-separated fields, got {len(parts)}")
                    continue
                yield Record(str(path), lineno, {"q": parts[0], "a": parts[1]})

    def detect(self, record):
        return set(record) == {"q", "a"}

    def parse(self, record, config):
        if not record["a"]:
            raise RecordError("empty answer")
        return PromptResponse({"input": record["q"], "output": record["a"]})


class TabPlugin:
    @hookimpl
    def sft_register_dataset_formats(self, register):
        register(TabFormat())


def registries() -> DataRegistries:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(TabPlugin(), name="tab-plugin")
    return DataRegistries.from_plugin_manager(pm)


def test_named_format_reads_its_own_files_with_file_line_problems(tmp_path, char_tokenizer):
    data = tmp_path / "qa.tsv"
    data.write_text("hi\tyo\nbroken line\nwhy\t\nok\tgo\n", encoding="utf-8")
    config = DataConfig(format="tab", skip_invalid=True)
    result = tokenize_files([data], char_tokenizer, config, registries())
    assert [s.source for s in result.samples] == [f"{data}:1", f"{data}:4"]
    assert result.samples[0].input_ids == char_tokenizer.encode("hi yo") + [char_tokenizer.eos_id]
    assert [str(p) for p in result.problems] == [
        f"{data}:2: expected 2 tab-separated fields, got 1",
        f"{data}:3: empty answer",
    ]


def test_auto_still_reads_json_lines_and_detects_the_plugin_format(tmp_path, char_tokenizer):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": "hi", "a": "yo"}\n', encoding="utf-8")
    result = tokenize_files([data], char_tokenizer, DataConfig(), registries())
    assert result.files[0].format == "tab"
    assert result.samples[0].input_ids == char_tokenizer.encode("hi yo") + [char_tokenizer.eos_id]
