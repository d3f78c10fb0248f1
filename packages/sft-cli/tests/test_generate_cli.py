"""``sft generate`` as a user runs it, on a tiny random model made by ``sft init``."""

from __future__ import annotations

import json


def test_prompt_input_and_usage_errors(run, tiny, tmp_path):
    one = run("generate", tiny, "--prompt", "What colour is snow?", "--max-new-tokens", "5")
    assert one.exit_code == 0, one.output
    data = tmp_path / "in.jsonl"
    rows = [{"input": "Spell cat backwards.", "output": "cat backwards is tac."},
            {"messages": [{"role": "user", "content": "What is 2 plus 2?"}]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("generate", tiny, "--input", data, "--output", tmp_path / "out.jsonl", "--max-new-tokens", "4",
                 "--temperature", "0.8", "--top-k", "5", "--seed", "3")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [a["input"] if "input" in a else a["messages"] for a in answers] == [rows[0]["input"], rows[1]["messages"]]
    assert all(isinstance(a["generated"], str) and a["finish_reason"] in ("stop", "length") for a in answers)
    assert "exact match: " in result.stderr and "/1 " in result.stderr  # only the first row has an answer
    again = run("generate", tiny, "--input", data, "--output", tmp_path / "again.jsonl", "--max-new-tokens", "4",
                "--temperature", "0.8", "--top-k", "5", "--seed", "3")
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()  # seeded
    assert again.exit_code == 0
    both = run("generate", tiny, "--prompt", "x", "--input", data)
    assert both.exit_code == 2 and "exactly one of" in both.stderr
    data.write_text('{"input": "x", "output": "y"}\n{not json\n')
    bad = run("generate", tiny, "--input", data)
    assert bad.exit_code == 1 and "in.jsonl:2" in bad.stderr


def test_temperature_zero_is_greedy_and_a_negative_one_names_the_flag(run, tiny):
    def answer(*extra):
        result = run("generate", tiny, "--prompt", "What colour is snow?", "--max-new-tokens", "12", *extra)
        assert result.exit_code == 0, result.output
        return result.stdout

    greedy = answer()
    assert greedy.strip()  # the random model does say something, so the comparisons below mean something
    assert answer("--temperature", "0") == greedy
    assert answer("--temperature", "0", "--top-k", "50", "--seed", "7") == greedy  # 0 wins over sampling settings
    sampled = {answer("--temperature", "5", "--seed", str(seed)) for seed in range(3)}
    assert sampled != {greedy}  # a real temperature samples
    bad = run("generate", tiny, "--prompt", "x", "--temperature", "-0.5")
    assert bad.exit_code == 2  # a usage error, as click reports every bad option value
    assert bad.stderr.splitlines()[-1] == "Error: Invalid value for '--temperature': -0.5 is not in the range x>=0."
