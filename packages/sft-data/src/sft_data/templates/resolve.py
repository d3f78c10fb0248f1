"""Which chat template: the built-in ``chatml`` and ``llama3`` sources, and resolving a spec.

``--chat-template`` / ``DataConfig.chat_template`` accepts a registered name (``nemo``, ``chatml``,
``llama3``, a plugin's); a ``.jinja`` file; a ``tokenizer_config.json`` (its ``chat_template``); a
tokenizer directory (its ``chat_template.jinja`` or config); ``tokenizer`` (the loaded tokenizer's
own template); Jinja source itself (what ``sft train`` stores in a .nemo); or None: the tokenizer's own template when it has one, else ``chatml``. Using the
tokenizer's template by default is what keeps training and inference formats the same (axolotl 1832).

The built-in sources are the well-known templates' text (ChatML as Qwen/OpenAI write it; Llama 3's
as Meta ships it, ``bos_token`` first and contents trimmed) with ``{% generation %}`` markers saying
what is trained: an assistant message's content and its end-of-turn token (``<|im_end|>`` /
``<|eot_id|>``), which is how the model learns to stop. The newline ChatML writes after
``<|im_end|>`` is not trained: generation stops at ``<|im_end|>``, so the model never produces it.
Jinja's ``trim_blocks`` eats a newline written right after a tag, so newlines are string literals.
"""

from __future__ import annotations

import re
from pathlib import Path

from sft_core import Registry

from sft_data.errors import SftError
from sft_data.templates.base import ChatTemplate
from sft_data.templates.jinja import JinjaChatTemplate
from sft_data.tokenizers.base import Tokenizer
from sft_data.tokenizers.huggingface import config_chat_template, read_json

DEFAULT_TEMPLATE = "chatml"
FROM_TOKENIZER = "tokenizer"
INLINE = "inline"
JINJA_SOURCE = re.compile(r"\{[{%]")

CHATML_SOURCE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3_SOURCE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def chatml_template() -> JinjaChatTemplate:
    return JinjaChatTemplate(
        CHATML_SOURCE, name="chatml", description="ChatML (<|im_start|>role ... <|im_end|>), as Qwen and OpenAI"
    )


def llama3_template() -> JinjaChatTemplate:
    return JinjaChatTemplate(
        LLAMA3_SOURCE, name="llama3", description="Llama 3 (<|start_header_id|>role<|end_header_id|> ... <|eot_id|>)"
    )


def resolve_chat_template(spec: str | None, tokenizer: Tokenizer, registry: Registry) -> ChatTemplate:
    """The template ``spec`` names; see the module docstring for what ``spec`` may be."""
    if spec is None:
        if tokenizer.chat_template:
            return JinjaChatTemplate(tokenizer.chat_template, name=FROM_TOKENIZER)
        return registry.get(DEFAULT_TEMPLATE)
    if spec == FROM_TOKENIZER:
        if not tokenizer.chat_template:
            raise SftError(
                f"chat template {FROM_TOKENIZER!r}: the tokenizer has no chat template "
                f"(pass a registered name such as {DEFAULT_TEMPLATE!r}, a .jinja file or a tokenizer_config.json)"
            )
        return JinjaChatTemplate(tokenizer.chat_template, name=FROM_TOKENIZER)
    if spec in registry:
        return registry.get(spec)
    if JINJA_SOURCE.search(spec):
        return JinjaChatTemplate(spec, name=INLINE)
    path = Path(spec)
    if path.exists():
        return JinjaChatTemplate(_read_template_file(path), name=str(path))
    if _looks_like_path(spec):
        raise SftError(f"chat template file {spec}: not found")
    raise SftError(registry.unknown_message(spec) + "; or pass a .jinja file or a tokenizer_config.json")


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith((".jinja", ".j2", ".json"))


def _read_template_file(path: Path) -> str:
    if path.is_dir():
        for name in ("chat_template.jinja", "tokenizer_config.json"):
            if (path / name).is_file():
                return _read_template_file(path / name)
        raise SftError(f"{path}: no chat_template.jinja or tokenizer_config.json in this directory")
    if path.suffix == ".json":
        template = config_chat_template(read_json(path))
        if template is None:
            raise SftError(f"{path}: has no chat_template")
        return template
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SftError(f"{path}: cannot read the chat template ({exc})") from None
