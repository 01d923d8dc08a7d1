"""serve's malloc tuning: applied on glibc, and an operator's own MALLOC_* settings win."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize(
    ("environ", "tuned"),
    [
        ({}, GLIBC),
        ({"PATH": "/usr/bin"}, GLIBC),
        ({"MALLOC_ARENA_MAX": "2"}, False),  # the operator tunes malloc: left alone
        ({"MALLOC_MMAP_THRESHOLD_": "131072"}, False),
    ],
)
def test_tune_malloc_applies_unless_the_environment_tunes_it(environ: dict[str, str], tuned: bool) -> None:
    # In a process of its own: the settings are for the life of the process that takes them.
    code = f"from spark_mcp.allocator import tune_malloc; print(tune_malloc({environ!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tuned)


def test_the_config_key_turns_it_off() -> None:
    from spark_mcp.config import load_config

    assert load_config(None, environ={}, overrides={}).server.tune_malloc is True
    assert load_config(None, environ={"SPARK_MCP_SERVER__TUNE_MALLOC": "false"}).server.tune_malloc is False
