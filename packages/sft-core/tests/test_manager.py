"""The plugin-manager factory: hosts' hooks and built-ins, blocking, entry points, validation."""

from __future__ import annotations

import sys
import textwrap
import types
from importlib import metadata

import pytest
import sft_core
from sft_core import PluginError, get_plugin_manager, hookimpl, hookspec

BUILTIN = types.ModuleType("fake_host_builtin")


@hookimpl
def sft_register_things(register):
    register("builtin-thing", name="builtin-thing")


BUILTIN.sft_register_things = sft_register_things


@hookspec
def _spec_register_things(register):
    """Register things."""


FakeHost = types.ModuleType("fake_host.hookspecs")
FakeHost.DEFAULT_PLUGINS = ("fake_host_builtin",)
FakeHost.sft_register_things = _spec_register_things


@pytest.fixture(autouse=True)
def builtin_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_host_builtin", BUILTIN)
    monkeypatch.delenv(sft_core.DISABLE_ENV, raising=False)


def test_hosts_hooks_and_builtins_are_registered():
    pm = get_plugin_manager(load_entrypoints=False, hosts=[FakeHost])
    assert pm.hosts == ["fake_host.hookspecs"]
    assert pm.builtin == {"fake_host_builtin"}
    assert pm.hook.sft_register_things.has_spec()
    assert sft_core.collect(pm, "sft_register_things", "thing").names() == ["builtin-thing"]


def test_blocked_by_argument_and_environment(monkeypatch):
    assert get_plugin_manager(load_entrypoints=False, hosts=[FakeHost], blocked=["fake_host_builtin"]).builtin == set()
    monkeypatch.setenv(sft_core.DISABLE_ENV, " other , fake_host_builtin")
    pm = get_plugin_manager(load_entrypoints=False, hosts=[FakeHost])
    assert pm.builtin == set() and pm.is_blocked("other")


def test_a_hook_nobody_declares_names_the_plugin():
    class Stray:
        @hookimpl
        def sft_frobnicate(self):
            pass

    with pytest.raises(PluginError, match=r"plugin '\w+' implements 'sft_frobnicate', a hook no installed sft package"):
        get_plugin_manager(load_entrypoints=False, hosts=[FakeHost], plugins=[Stray()])

    class Optional:
        @hookimpl(optionalhook=True)
        def sft_frobnicate(self):
            pass

    get_plugin_manager(load_entrypoints=False, hosts=[FakeHost], plugins=[Optional()])


def _install(site, name: str, module: str, source: str, version: str = "1.2.3") -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[sft]\n{name} = {module}\n", encoding="utf-8")


def test_entry_points_load_one_by_one_a_broken_one_is_named_and_skipped(tmp_path, monkeypatch):
    _install(tmp_path, "goodplug", "goodplug_mod", """
        from sft_core import hookimpl

        @hookimpl
        def sft_register_things(register):
            register("good-thing", name="good-thing")
    """)
    _install(tmp_path, "badplug", "badplug_mod", "raise ImportError('needs libfoo')\n")
    others = [ep.name for ep in metadata.entry_points(group="sft")]  # the workspace's own plugins
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = get_plugin_manager(hosts=[FakeHost], blocked=others)
    assert [(f.name, f.error) for f in pm.load_failures] == [("badplug", "ImportError: needs libfoo")]
    assert pm.versions["goodplug"] == "1.2.3"
    # the entry point registered last is asked first
    assert sft_core.collect(pm, "sft_register_things", "thing").names() == ["good-thing", "builtin-thing"]
    assert get_plugin_manager(hosts=[FakeHost], blocked=[*others, "goodplug"]).get_plugin("goodplug") is None
