"""``[server] event_loop``: the loop serve runs on (uvloop unless told otherwise)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
import uvloop

from spark_mcp import event_loop
from spark_mcp.config.server import EventLoop
from spark_mcp.errors import ConfigError


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.mark.parametrize(
    ("choice", "expected", "is_uvloop"),
    [("auto", "uvloop", True), ("uvloop", "uvloop", True), ("asyncio", "asyncio", False)],
)
def test_the_chosen_loop_is_the_loop_that_runs(choice: EventLoop, expected: str, is_uvloop: bool) -> None:
    assert event_loop.loop_name(choice) == expected
    assert isinstance(event_loop.run(choice, _running_loop), uvloop.Loop) is is_uvloop


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake for what this machine cannot show on demand: uvloop missing (Windows has none).
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert event_loop.loop_name("auto") == "asyncio"
    assert not isinstance(event_loop.run("auto", _running_loop), uvloop.Loop)
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        event_loop.run("uvloop", _running_loop)
