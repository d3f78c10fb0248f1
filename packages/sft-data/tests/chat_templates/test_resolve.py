"""resolve_chat_template: names, files, the tokenizer's own template, defaults; plugin templates."""

from __future__ import annotations

import json

import pytest
from sft_core import get_plugin_manager
from sft_data.errors import PluginError, SftError
from sft_data.hookspecs import hookimpl
from sft_data.registries import DataRegistries
from sft_data.templates.jinja import JinjaChatTemplate
from sft_data.templates.resolve import CHATML_SOURCE, LLAMA3_SOURCE, resolve_chat_template
from sft_data.tokenizers.huggingface import HuggingFaceTokenizer
from sft_data.types import Conversation, Turn

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def registry():
    return DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False)).chat_templates


@pytest.mark.parametrize("name", ["nemo", "chatml", "llama3"])
def test_registered_names(registry, char_tok, name):
    template = resolve_chat_template(name, char_tok, registry)
    assert template.name == name and template is registry.get(name)


def test_built_in_jinja_templates_are_registered(registry):
    assert registry.get("chatml").source == CHATML_SOURCE
    assert registry.get("llama3").source == LLAMA3_SOURCE
    assert registry.entry("chatml").plugin == "sft_data.templates.builtin"


def test_jinja_file_and_tokenizer_config(tmp_path, registry, char_tok):
    jinja = tmp_path / "mine.jinja"
    jinja.write_text(TEMPLATE, encoding="utf-8")
    template = resolve_chat_template(str(jinja), char_tok, registry)
    assert isinstance(template, JinjaChatTemplate) and template.source == TEMPLATE

    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": TEMPLATE}), encoding="utf-8")
    assert resolve_chat_template(str(config), char_tok, registry).source == TEMPLATE

    # The named-list form keeps the "default" template.
    config.write_text(json.dumps({"chat_template": [{"name": "tool_use", "template": "x"},
                                                    {"name": "default", "template": TEMPLATE}]}))
    assert resolve_chat_template(str(config), char_tok, registry).source == TEMPLATE
    # A directory: its chat_template.jinja first, as transformers.
    (tmp_path / "chat_template.jinja").write_text(TEMPLATE + "!", encoding="utf-8")
    assert resolve_chat_template(str(tmp_path), char_tok, registry).source == TEMPLATE + "!"


def test_tokenizer_template_and_default(make_hf_tokenizer, registry, char_tok):
    with_template = HuggingFaceTokenizer(make_hf_tokenizer("a", config={"chat_template": TEMPLATE}))
    for spec in ("tokenizer", None):
        template = resolve_chat_template(spec, with_template, registry)
        assert template.source == TEMPLATE and template.name == "tokenizer"
    without = HuggingFaceTokenizer(make_hf_tokenizer("b", config={}))
    assert resolve_chat_template(None, without, registry) is registry.get("chatml")
    with pytest.raises(SftError, match="'tokenizer': the tokenizer has no chat template"):
        resolve_chat_template("tokenizer", without, registry)


def test_errors_name_the_problem(tmp_path, registry, char_tok):
    with pytest.raises(SftError, match="unknown chat template 'chatm'; did you mean 'chatml'"):
        resolve_chat_template("chatm", char_tok, registry)
    with pytest.raises(SftError, match=r"missing\.jinja: not found"):
        resolve_chat_template(str(tmp_path / "missing.jinja"), char_tok, registry)
    config = tmp_path / "tokenizer_config.json"
    config.write_text("{}", encoding="utf-8")
    with pytest.raises(SftError, match="has no chat_template"):
        resolve_chat_template(str(config), char_tok, registry)
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(SftError, match="invalid JSON"):
        resolve_chat_template(str(config), char_tok, registry)
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% if %}", encoding="utf-8")
    with pytest.raises(SftError, match="invalid Jinja chat template"):
        resolve_chat_template(str(bad), char_tok, registry)


class AcmePlugin:
    """A third party's plugin: registers a Jinja template through the public hook."""

    @hookimpl
    def sft_register_chat_templates(self, register):
        register(JinjaChatTemplate(TEMPLATE, name="acme"))


class ClashingPlugin:
    @hookimpl
    def sft_register_chat_templates(self, register):
        register(JinjaChatTemplate(TEMPLATE, name="chatml"))


def test_third_party_template_is_found(char_tok):
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(AcmePlugin(), name="acme-plugin")
    registry = DataRegistries.from_plugin_manager(pm).chat_templates
    assert registry.entry("acme").plugin == "acme-plugin"
    template = resolve_chat_template("acme", char_tok, registry)
    segments = template.render(Conversation((Turn("user", "q"), Turn("assistant", "a"))), char_tok)
    # TEMPLATE writes no generation prompt, so the role name is part of what the model must produce.
    assert [s.text for s in segments if s.trained] == ["assistant: a\n"]


def test_a_plugin_cannot_shadow_a_built_in_template():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ClashingPlugin(), name="clash")
    with pytest.raises(PluginError, match=r"'chatml' is registered by both 'clash' and 'sft_data\.templates\.builtin'"):
        DataRegistries.from_plugin_manager(pm)


@pytest.mark.parametrize(
    ("spec", "stored"),
    [(None, {"chat_template": "chatml"}), ("llama3", {"chat_template": "llama3"}), ("file", "source")],
)
def test_chat_settings_bring_the_same_template_back(tmp_path, char_tok, spec, stored):
    # What `sft train` stores in the .nemo for `sft generate`: a registered name, or a file's Jinja
    # source itself (the file may be gone by then); resolving it gives the same rendering.
    from sft_data.config import DataConfig
    from sft_data.formats.messages import MessagesFormat
    from sft_data.samples import SampleBuilder

    if spec == "file":
        spec = str(tmp_path / "mine.jinja")
        (tmp_path / "mine.jinja").write_text(TEMPLATE, encoding="utf-8")
    registries = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False))
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    builder = SampleBuilder(DataConfig(chat_template=spec), char_tok, MessagesFormat(), registries)
    assert builder.chat_settings() is None  # nothing rendered yet
    sample = builder.build(record).sample
    settings = builder.chat_settings()
    assert settings == ({"chat_template": TEMPLATE} if stored == "source" else stored)
    (tmp_path / "mine.jinja").unlink(missing_ok=True)
    again = SampleBuilder(DataConfig(**settings), char_tok, MessagesFormat(), registries).build(record).sample
    assert (again.input_ids, again.loss_mask) == (sample.input_ids, sample.loss_mask)
