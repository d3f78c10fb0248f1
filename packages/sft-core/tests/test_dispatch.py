"""Event hooks: a failing plugin is reported once and disabled; everyone else still gets every event."""

from __future__ import annotations

import io

import pluggy
import pytest
from sft_core import EventDispatcher, hookimpl, hookspec


class Specs:
    @hookspec
    def sft_on_event(self, value):
        """An event."""


class Recorder:
    def __init__(self, name: str, log: list, fail_on: int | None = None):
        self.name, self.log, self.fail_on = name, log, fail_on

    @hookimpl
    def sft_on_event(self, value):
        self.record(value)

    def record(self, value):
        if value == self.fail_on:
            raise RuntimeError(f"{self.name} cannot take {value}")
        self.log.append((self.name, value))


class EagerRecorder(Recorder):
    @hookimpl(tryfirst=True)
    def sft_on_event(self, value):
        self.record(value)


def manager(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sft")
    pm.add_hookspecs(Specs)
    for plugin in plugins:
        pm.register(plugin, name=plugin.name)
    return pm


def test_a_failing_plugin_is_reported_once_disabled_and_nobody_misses_an_event():
    log, stream = [], io.StringIO()
    # pluggy calls c, then b, then a: b fails on event 2 after c ran; a must still get event 2, c not twice
    pm = manager(Recorder("a", log), Recorder("b", log, fail_on=2), Recorder("c", log))
    events = EventDispatcher(pm, stream=stream)
    for value in (1, 2, 3):
        events.call("sft_on_event", value=value)
    assert log == [("c", 1), ("b", 1), ("a", 1), ("c", 2), ("a", 2), ("c", 3), ("a", 3)]
    assert events.disabled == {"b": "RuntimeError: b cannot take 2"}
    assert stream.getvalue() == ("warning: plugin 'b' failed in sft_on_event (RuntimeError: b cannot take 2); "
                                 "it is disabled, the run goes on\n")


def test_two_failures_in_one_event():
    log, stream = [], io.StringIO()
    pm = manager(Recorder("a", log, fail_on=1), Recorder("b", log), EagerRecorder("c", log, fail_on=1))
    events = EventDispatcher(pm, stream=stream)
    events.call("sft_on_event", value=1)
    events.call("sft_on_event", value=2)
    assert log == [("b", 1), ("b", 2)]
    assert set(events.disabled) == {"a", "c"}
    assert len(stream.getvalue().splitlines()) == 2


def test_disabled_ranks_call_nothing():
    log = []
    EventDispatcher(manager(Recorder("a", log)), enabled=False).call("sft_on_event", value=1)
    assert log == []


def test_an_error_outside_any_plugin_is_not_blamed_on_one():
    log = []
    events = EventDispatcher(manager(Recorder("a", log)))
    with pytest.warns(UserWarning), pytest.raises(pluggy.HookCallError):
        events.call("sft_on_event", wrong_argument=1)  # the caller's mistake: raised, nobody disabled
    assert events.disabled == {}
    events.call("sft_on_event", value=1)
    assert log == [("a", 1)]


def test_a_required_plugin_s_failure_reaches_the_caller():
    log = []
    required = Recorder("record", log, fail_on=2)
    required.required = True
    events = EventDispatcher(manager(Recorder("a", log), required))
    events.call("sft_on_event", value=1)
    with pytest.raises(RuntimeError, match="record cannot take 2"):
        events.call("sft_on_event", value=2)
    assert events.disabled == {}
