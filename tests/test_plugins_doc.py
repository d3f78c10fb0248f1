"""Contract: docs/plugins.md documents every hookspec of every host, with its signature."""

from __future__ import annotations

import inspect
from pathlib import Path

from sft_core.manager import installed_hosts

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def hookspecs() -> dict[str, object]:
    return {name: fn for module in installed_hosts() for name, fn in vars(module).items()
            if name.startswith("sft_") and callable(fn)}


def test_every_hookspec_has_a_section_with_its_signature_and_an_example():
    text = DOC.read_text(encoding="utf-8")
    sections = {block.split("\n", 1)[0].strip(): block for block in text.split("\n### ")[1:]}
    problems = []
    for name, fn in sorted(hookspecs().items()):
        heading = f"`{name}({', '.join(inspect.signature(fn).parameters)})`"
        if heading not in sections:
            problems.append(f"no section '### {heading}'")
        elif f"def {name}(" not in sections[heading]:
            problems.append(f"{heading}: no example implementing it")
    assert not problems, problems
