"""Registration hooks go through pluggy: its order, tryfirst/trylast, wrappers and monitoring apply,
and every entry still knows which plugin registered it."""

from __future__ import annotations

import pluggy
import pytest
from sft_core import PluginError, Registry, SftError, collect, did_you_mean, hookimpl, hookspec


class Specs:
    @hookspec
    def sft_register_things(self, register):
        """Register things."""


def manager(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sft")
    pm.add_hookspecs(Specs)
    for plugin in plugins:
        pm.register(plugin, name=plugin.name)
    return pm


class Thing:
    def __init__(self, name: str):
        self.name = name


class Plain:
    def __init__(self, name: str, *things: str):
        self.name, self.things = name, things

    @hookimpl
    def sft_register_things(self, register):
        for thing in self.things:
            register(Thing(thing))


class First(Plain):
    @hookimpl(tryfirst=True)
    def sft_register_things(self, register):
        register(Thing(self.things[0]))


class Last(Plain):
    @hookimpl(trylast=True)
    def sft_register_things(self, register):
        register(Thing(self.things[0]))


class ThroughHelper(Plain):
    def _add(self, register):
        register(Thing(self.things[0]))

    @hookimpl
    def sft_register_things(self, register):
        self._add(register)


def test_later_registered_plugins_come_first_and_tryfirst_trylast_are_honoured():
    pm = manager(Last("z", "zeta"), Plain("builtin", "alpha", "beta"), First("f", "phi"), Plain("third", "gamma"))
    registry = collect(pm, "sft_register_things", "thing")
    assert registry.names() == ["phi", "gamma", "alpha", "beta", "zeta"]
    assert [e.plugin for e in registry] == ["f", "third", "builtin", "builtin", "z"]


def test_a_wrapper_runs_around_the_registration_and_sees_the_registry_filled():
    seen = []

    class Wrapper:
        name = "wrapper"

        @hookimpl(wrapper=True)
        def sft_register_things(self, register):
            register(Thing("from-wrapper"))
            result = yield
            seen.append("after")
            return result

    registry = collect(manager(Plain("builtin", "alpha"), Wrapper()), "sft_register_things", "thing")
    assert seen == ["after"]
    assert {e.name: e.plugin for e in registry} == {"from-wrapper": "wrapper", "alpha": "builtin"}


def test_pluggy_monitoring_sees_the_call():
    pm = manager(Plain("builtin", "alpha"))
    calls = []
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append((name, [i.plugin_name for i in impls])),
                                      lambda outcome, name, impls, kwargs: None)
    collect(pm, "sft_register_things", "thing")
    undo()
    assert calls == [("sft_register_things", ["builtin"])]


def test_registration_through_a_helper_is_attributed_to_the_plugin():
    registry = collect(manager(ThroughHelper("helper", "eta")), "sft_register_things", "thing")
    assert registry.entry("eta").plugin == "helper"


def test_a_name_registered_twice_names_both_plugins():
    with pytest.raises(PluginError, match=r"thing 'alpha' is registered by both 'late' and 'builtin'"):
        collect(manager(Plain("builtin", "alpha"), Plain("late", "alpha")), "sft_register_things", "thing")


def test_a_crashing_plugin_is_named():
    class Broken:
        name = "broken"

        @hookimpl
        def sft_register_things(self, register):
            raise ZeroDivisionError("oops")

    with pytest.raises(PluginError, match=r"plugin 'broken' failed in sft_register_things: ZeroDivisionError: oops"):
        collect(manager(Plain("builtin", "alpha"), Broken()), "sft_register_things", "thing")


def test_an_sft_error_from_a_plugin_reaches_the_user_unchanged():
    class Picky:
        name = "picky"

        @hookimpl
        def sft_register_things(self, register):
            raise SftError("picky: THING_HOME is not set")

    with pytest.raises(SftError, match=r"^picky: THING_HOME is not set$"):
        collect(manager(Picky()), "sft_register_things", "thing")


def test_a_nameless_registration_is_refused():
    class Nameless:
        name = "nameless"

        @hookimpl
        def sft_register_things(self, register):
            register(object())

    with pytest.raises(PluginError, match=r"plugin 'nameless' registered a thing without a name"):
        collect(manager(Nameless()), "sft_register_things", "thing")


def test_unknown_names_suggest_the_closest():
    registry = Registry("chat template")
    registry.add(Thing("chatml"), "builtin")
    registry.add(Thing("llama3"), "builtin")
    with pytest.raises(SftError, match=r"unknown chat template 'chatm'; did you mean 'chatml'\? \(available: chatml, llama3\)"):
        registry.get("chatm")
    assert did_you_mean("zzz", ["chatml"]) == ""
