"""The plugin manager as a third party meets it: entry points, blocking, failures, duplicates."""

from __future__ import annotations

import json
import sys
import textwrap
from importlib import metadata

import pytest
from click.testing import CliRunner
from sft_cli.app import create_cli
from sft_core import PluginError, get_plugin_manager
from sft_data.registries import DataRegistries


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Install fake distributions (dist-info with an ``sft`` entry point) on sys.path."""

    def install(name: str, module_source: str, version: str = "1.2.3") -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(module_source))
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[sft]\n{name} = {name}\n")

    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    for name in list(sys.modules):
        if name.startswith("thirdparty_"):
            del sys.modules[name]


GOOD_PLUGIN = """
    import click
    import pluggy

    hookimpl = pluggy.HookimplMarker("sft")

    class Shout:
        name = "shout"
        description = "every record is {text}"

        def detect(self, record):
            return "text" in record

        def parse(self, record, config):
            from sft_data.types import PromptResponse
            return PromptResponse({"input": "", "output": record["text"].upper()})

    @hookimpl
    def sft_register_dataset_formats(register):
        register(Shout())

    @click.command("hello")
    def hello():
        "Say hello."
        click.echo("hello from a plugin")

    @hookimpl
    def sft_register_commands(cli):
        cli.add_command(hello)
"""


def test_entry_point_plugin_adds_format_and_command(installed_plugins):
    installed_plugins("thirdparty_good", GOOD_PLUGIN)
    pm = get_plugin_manager()
    assert pm.get_plugin("thirdparty_good") is not None
    registries = DataRegistries.from_plugin_manager(pm)
    assert registries.formats.entry("shout").plugin == "thirdparty_good"
    runner = CliRunner()
    cli = create_cli(pm)
    assert runner.invoke(cli, ["hello"]).output == "hello from a plugin\n"
    listing = json.loads(runner.invoke(cli, ["plugins", "--json"]).output)
    # the workspace's own plugins (sft-lora, sft-tensorboard, …) are installed too: look at ours only
    assert [p for p in listing["plugins"] if p["name"].startswith("thirdparty_")] == [{
        "name": "thirdparty_good", "version": "1.2.3", "builtin": False,
        "hooks": ["sft_register_commands", "sft_register_dataset_formats"],
    }]
    only = json.loads(runner.invoke(cli, ["plugins", "--all", "--json", "--hook", "sft_register_commands"]).output)
    assert [p["name"] for p in only["plugins"] if p["builtin"] or p["name"].startswith("thirdparty_")] == [
        "sft_cli.commands.builtin", "thirdparty_good"]


def test_disable_env_blocks_plugins(installed_plugins, monkeypatch):
    installed_plugins("thirdparty_good", GOOD_PLUGIN)
    monkeypatch.setenv("SFT_DISABLE_PLUGINS", "thirdparty_good, sft_data.packing.builtin")
    pm = get_plugin_manager()
    assert pm.get_plugin("thirdparty_good") is None
    registries = DataRegistries.from_plugin_manager(pm)
    assert "shout" not in registries.formats
    assert registries.packing_algorithms.names() == []
    listing = json.loads(CliRunner().invoke(create_cli(pm), ["plugins", "--json"]).output)
    assert listing["blocked"] == ["sft_data.packing.builtin", "thirdparty_good"]


def test_broken_plugin_is_reported_by_name_and_others_load(installed_plugins):
    installed_plugins("thirdparty_broken", "raise ImportError('needs a missing library')\n")
    installed_plugins("thirdparty_good", GOOD_PLUGIN)
    pm = get_plugin_manager()
    assert pm.get_plugin("thirdparty_good") is not None
    assert [(f.name, f.error) for f in pm.load_failures] == [
        ("thirdparty_broken", "ImportError: needs a missing library")]
    result = CliRunner().invoke(create_cli(pm), ["plugins"])
    assert "failed to load thirdparty_broken: ImportError: needs a missing library" in result.output


def test_unknown_hook_is_a_clear_error(installed_plugins):
    installed_plugins("thirdparty_typo", """
        import pluggy
        hookimpl = pluggy.HookimplMarker("sft")

        @hookimpl
        def sft_register_dataset_format(register):
            pass
    """)
    with pytest.raises(PluginError, match=r"thirdparty_typo.*sft_register_dataset_format"):
        get_plugin_manager()


def test_duplicate_names_name_both_plugins(installed_plugins):
    installed_plugins("thirdparty_dup", """
        import pluggy
        hookimpl = pluggy.HookimplMarker("sft")

        class Fake:
            name = "messages"
            def detect(self, record): return False
            def parse(self, record, config): raise AssertionError

        @hookimpl
        def sft_register_dataset_formats(register):
            register(Fake())
    """)
    pm = get_plugin_manager()
    with pytest.raises(PluginError, match=r"dataset format 'messages' is registered by both "
                                          r"'thirdparty_dup' and 'sft_data.formats.builtin'"):
        DataRegistries.from_plugin_manager(pm)


def test_duplicate_command_is_an_error(installed_plugins):
    installed_plugins("thirdparty_cmd", """
        import click, pluggy
        hookimpl = pluggy.HookimplMarker("sft")

        @hookimpl
        def sft_register_commands(cli):
            cli.add_command(click.Command("prepare"))
    """)
    with pytest.raises(PluginError, match="command 'prepare' is added twice"):
        create_cli(get_plugin_manager())


def test_failing_registration_hook_names_the_plugin(installed_plugins):
    installed_plugins("thirdparty_boom", """
        import pluggy
        hookimpl = pluggy.HookimplMarker("sft")

        @hookimpl
        def sft_register_tokenizers(register):
            raise RuntimeError("boom")
    """)
    with pytest.raises(PluginError, match="plugin 'thirdparty_boom' failed in sft_register_tokenizers: RuntimeError: boom"):
        DataRegistries.from_plugin_manager(get_plugin_manager())


def test_a_manager_with_sft_data_alone_takes_plugins_that_mark_other_hosts_hooks_optional(installed_plugins):
    from sft_data import hookspecs as data_hookspecs

    installed_plugins("thirdparty_good", GOOD_PLUGIN.replace("@hookimpl\n    def sft_register_commands",
                                                             "@hookimpl(optionalhook=True)\n    def sft_register_commands"))
    # the workspace's own plugins implement trainer hooks; with sft-data alone they are not installed
    others = [ep.name for ep in metadata.entry_points(group="sft") if not ep.name.startswith("thirdparty_")]
    registries = DataRegistries.from_plugin_manager(get_plugin_manager(hosts=[data_hookspecs], blocked=others))
    assert "shout" in registries.formats
