"""Helpers the test modules share: calling tools, test configs, and what a test looks for.

Fixtures stay in ``conftest.py``; anything a test module imports comes from here, so no
test module imports another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import CallToolResult

from spark_mcp.config import Config, load_config

TESTS = Path(__file__).resolve().parent
SPARK_MCP = str(Path(sys.executable).parent / "spark-mcp")
TPCH_TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")

# About 4e10 joined rows: minutes of work on two cores, so it is still running when we look.
LONG_QUERY = "SELECT count(*) FROM range(200000) a CROSS JOIN range(200000) b WHERE a.id + b.id < 0"

ClientFactory = Callable[[str], AbstractAsyncContextManager[Client]]


def make_config(home: Path, data_dir: Path, **overrides: Any) -> Config:
    """The tests' config: TPC-H, HR, a secret table and CSV sales from ``data_dir``; test policies."""
    datasets: list[dict[str, object]] = [
        {"name": f"tpch.{t}", "path": str(data_dir / "tpch" / f"{t}.parquet")} for t in TPCH_TABLES
    ]
    datasets += [
        {"name": "hr.salaries", "path": str(data_dir / "hr" / "salaries.parquet")},
        {"name": "tpch.secret_codes", "path": str(data_dir / "secret_codes.parquet")},
        {
            "name": "sales.orders",
            "path": str(data_dir / "sales" / "orders.csv"),
            "format": "csv",
            "options": {"header": "true", "inferSchema": "true"},
        },
    ]
    values: dict[str, Any] = {
        "home": str(home),
        "policies": [str(TESTS / "policies")],
        "datasets": datasets,
        "driver": {"cores": 2, "memory": "1g"},
        "limits": {"max_rows": 1000, "max_chars": 8000, "query_timeout_s": 120},
        "results": {"max_rows": 2_000_000},
    }
    for key, value in overrides.items():
        values[key] = (
            {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) else value
        )
    return load_config(None, environ={}, overrides=values)


def write_config(home: Path, data_dir: Path, extra: str = "") -> Path:
    """A ``spark-mcp.toml`` next to ``home`` for a server process: the TPC-H tables, test policies, ``extra``."""
    lines = [f'home = "{home}"', f'policies = ["{TESTS / "policies"}"]', ""]
    for table in TPCH_TABLES:
        lines += ["[[datasets]]", f'name = "tpch.{table}"', f'path = "{data_dir / "tpch" / f"{table}.parquet"}"', ""]
    path = home.parent / "spark-mcp.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def server_env() -> dict[str, str]:
    # A host passes only what it is told to (plus HOME, PATH...): Java must be findable.
    keep = ("HOME", "PATH", "JAVA_HOME", "LANG", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


# -- a host speaking raw JSON-RPC to a server process over stdio ---------------------------


def rpc_line(request_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return (json.dumps(message) + "\n").encode()


def tool_call(request_id: int, name: str, **arguments: object) -> bytes:
    return rpc_line(request_id, "tools/call", {"name": name, "arguments": arguments})


@contextmanager
def raw_server(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    with subprocess.Popen(
        [SPARK_MCP, "serve", "--config", str(config), "--user", "alice"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(),
    ) as process:
        try:
            yield process
        finally:
            process.kill()


def send(process: subprocess.Popen[bytes], data: bytes) -> None:
    assert process.stdin is not None
    process.stdin.write(data)
    process.stdin.flush()


def read_replies(process: subprocess.Popen[bytes], ids: set[int]) -> dict[int, dict[str, Any]]:
    """Read stdout until every id in ``ids`` has its reply (notifications are skipped)."""
    assert process.stdout is not None
    replies: dict[int, dict[str, Any]] = {}
    while not ids <= set(replies):
        line = process.stdout.readline()
        assert line, "the server closed stdout"
        message = json.loads(line)
        if "id" in message:
            replies[message["id"]] = message
    return replies


def handshake(process: subprocess.Popen[bytes]) -> None:
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    send(process, rpc_line(0, "initialize", init))
    send(process, b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    read_replies(process, {0})


def nested_joins(depth: int) -> dict[str, Any]:
    """A plan that is a join of a join of ... ``depth`` plans deep."""
    plan: dict[str, Any] = {"source": {"range": {"end": 2}}}
    for _ in range(depth - 1):
        plan = {"source": {"range": {"end": 2}}, "operations": [{"op": "join", "right": plan, "on": ["id"]}]}
    return plan


def text_of(result: CallToolResult) -> str:
    """Every text block of a tool reply, joined: what the model reads."""
    return "\n".join(block.text for block in result.content if block.type == "text")


async def call(client: Client, tool: str, **arguments: object) -> dict[str, Any]:
    """A tool's structured reply; the test fails with the model's text if the tool failed."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    # Every spark-mcp tool's structured reply is a pydantic model dumped to a JSON object (tools/_base.reply).
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: object) -> str:
    """The error text the model reads, without the SDK's "Error executing tool X: " prefix."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"expected an error, got {result.structured_content}"
    return text_of(result).removeprefix(f"Error executing tool {tool}: ")


def driver_pids() -> dict[str, int]:
    """Every live spark-mcp driver on this machine, by driver id (from its command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in cmdline:
            if arg.startswith(b"spark.mcp.driver.id="):
                found[arg.split(b"=", 1)[1].decode()] = int(entry.name)
    return found


# What must never reach an agent: a Python traceback, a JVM stack, or the SDK's reply to a crash.
STACK_TRACE = re.compile(r"Traceback \(most recent call last\)|JVM stacktrace|^\s*at [\w$.<>/]+\(.*\)\s*$", re.M)
# An error the agent can act on: spark-mcp's own code, Spark's error class, or the SDK's report
# of arguments that failed validation (which names each argument and what is wrong with it).
CODED_ERROR = re.compile(r"^(?:[a-z][a-z_]*|[A-Z][A-Z0-9_.]*): \S")
VALIDATION_ERROR = re.compile(r"^\d+ validation errors? for \w+Arguments\n(?P<argument>[^\n]+)\n")


def actionable_error(tool: str, result: CallToolResult) -> str:
    """The error text of a failed call, after checking an agent can act on it; fails the test if not.

    Returns the text without the SDK's ``Error executing tool X: `` prefix.
    """
    assert result.is_error
    text = text_of(result)
    assert not STACK_TRACE.search(text), f"{tool}: a stack trace reached the agent:\n{text}"
    if text.startswith("Unknown tool: "):
        return text
    prefix = f"Error executing tool {tool}: "
    assert text.startswith(prefix), f"{tool}: a crash, not an error the agent can act on: {text!r}"
    said = text.removeprefix(prefix)
    assert not said.startswith("internal_error"), f"{tool}: {said}"
    assert CODED_ERROR.match(said) or VALIDATION_ERROR.match(said), f"{tool}: an error without a code: {said!r}"
    return said


class AuditCursor:
    """The audit records one principal gained since the cursor was made (or last read)."""

    def __init__(self, path: Path, principal: str) -> None:
        self.path = path
        self.principal = principal
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        records = [json.loads(line) for line in complete.splitlines()]
        return [r for r in records if r["principal"] == self.principal]


def pid_running(argument: str) -> int:
    """The pid of the one process of ours whose command line holds ``argument``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    assert len(found) == 1, found
    return found[0]


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def os_threads(pid: int | str = "self") -> int:
    """Threads of a process as the kernel counts them (gRPC's and the JVM client's included)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for pid {pid}")


def listening_addresses(pid: int) -> list[str]:
    """Local addresses of the TCP sockets ``pid`` listens on, as hex from /proc/net."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                addresses.append(fields[1].split(":")[0])
    return addresses


# 127.0.0.1 and ::1 (and ::ffff:127.0.0.1) as /proc/net writes them.
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
