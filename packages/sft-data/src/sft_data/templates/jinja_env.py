"""The sandboxed Jinja environment chat templates run in, as Hugging Face's ``apply_chat_template`` builds it.

Templates come from tokenizer files downloaded from anywhere, so they are untrusted code: they run
in ``ImmutableSandboxedEnvironment`` with the same globals and filters transformers provides
(``raise_exception``, ``strftime_now``, a ``tojson`` that does not HTML-escape, loop controls), so a
template renders here exactly as it renders for inference.

``{% generation %}…{% endgeneration %}`` (transformers' assistant-mask markers) is supported by an
extension that, while a render is being tracked, wraps the block's output in two sentinel
characters. Sentinels in the output are found wherever the block's text ends up; transformers
instead measures the output streamed so far, which is wrong when the block is rendered inside a
macro or a ``{% set %}`` block (their output is buffered, not streamed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from typing import ClassVar

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sft_data.errors import SftError

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

# (open, close) sentinels of the render being tracked; None when generation blocks pass through.
_markers: ContextVar[tuple[str, str] | None] = ContextVar("sft_generation_markers", default=None)


class GenerationExtension(jinja2.ext.Extension):
    """``{% generation %}body{% endgeneration %}``: the body, wrapped in sentinels while tracking."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.CallBlock:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_wrap"), [], [], body).set_lineno(lineno)

    def _wrap(self, caller) -> str:
        text = caller()
        markers = _markers.get()
        return f"{markers[0]}{text}{markers[1]}" if markers else text


@contextmanager
def track_generation(open_marker: str, close_marker: str) -> Iterator[None]:
    """Within this block, generation bodies are wrapped in ``open_marker``…``close_marker``."""
    token = _markers.set((open_marker, close_marker))
    try:
        yield
    finally:
        _markers.reset(token)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson HTML-escapes (`<` -> \u003c), which is not what the model saw at inference.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


class _Namespace(jinja2.utils.Namespace):
    # As transformers: namespaces reject underscore names so a template cannot reach CPython internals.
    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attributes ({name!r})")


def make_environment() -> ImmutableSandboxedEnvironment:
    """A fresh sandbox configured like transformers' (trim_blocks and lstrip_blocks on)."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationExtension, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = _Namespace
    return env


@lru_cache(maxsize=32)
def compile_template(source: str, name: str = "chat template") -> jinja2.Template:
    """Compile once per source; a syntax error is one line naming the template and the line."""
    try:
        return make_environment().from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise SftError(f"{name}: invalid Jinja chat template (line {exc.lineno}: {exc.message})") from None


def has_generation_markers(source: str) -> bool:
    return GENERATION_TAG.search(source) is not None
