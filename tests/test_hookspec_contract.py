"""Contract: every hookspec of every host is implemented by at least one test plugin."""

from __future__ import annotations

import re
from pathlib import Path

from sft_core.manager import installed_hosts

REPO = Path(__file__).resolve().parents[1]
TEST_DIRS = [REPO / "tests", *sorted((REPO / "packages").glob("*/tests")), *sorted((REPO / "plugins").glob("*/tests"))]


def all_hookspecs() -> set[str]:
    names = set()
    for module in installed_hosts():
        names |= {name for name in vars(module) if name.startswith("sft_") and callable(getattr(module, name))}
    return names


def test_there_are_hookspecs():
    assert [m.__name__ for m in installed_hosts()] == [
        "sft_data.hookspecs", "sft_model.hookspecs", "sft_trainer.hookspecs", "sft_cli.hookspecs"]
    assert {"sft_register_dataset_formats", "sft_register_commands"} <= all_hookspecs()


def test_every_hookspec_is_exercised_by_a_test():
    sources = "\n".join(p.read_text(encoding="utf-8") for d in TEST_DIRS for p in d.rglob("test_*.py"))
    # A test exercises a hook when it defines an implementation of it (a plugin written in the test).
    missing = sorted(name for name in all_hookspecs() if not re.search(rf"def {name}\(", sources))
    assert not missing, f"hookspecs without a test implementing them: {missing}"
