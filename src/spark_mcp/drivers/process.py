"""Processes: spawn, identify and stop them. The only module that creates processes.

A driver is started in a session of its own (so a terminal's Ctrl-C reaches the server,
which then stops its drivers in order) and, on Linux, with a parent-death signal, so the
kernel stops it even if the server is killed without a chance to clean up.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_loopback_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the driver may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Sets the parent-death signal, then becomes the real command (same pid, the setting survives
# exec). It runs as its own program rather than as a preexec_fn: Python code between fork and
# exec in a process with gRPC threads can crash the child (seen here: SIGABRT in grpc's poller).
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)  # the parent died before prctl\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _PDEATHSIG_EXEC, str(os.getpid()), *argv]


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path, parent_death: bool = True
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log_path`` (0600).

    With ``parent_death`` (drivers that live as long as their server), the kernel stops the
    process when the server dies. Call this from a long-lived thread (the event loop's): the
    parent-death signal fires when the thread that forked the child exits, not only when the
    process does.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            _with_parent_death_signal(argv) if parent_death else list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_has_marker(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``.

    Used before signalling a pid read from a state file, so a recycled pid that now
    belongs to someone else's process is never killed.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None.

    A pid and its start time name one process for good: a recycled pid starts later.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[-1].split()[19])
    except (IndexError, ValueError):
        return None


def is_same_process(pid: int, start: int | None) -> bool:
    """``pid`` is alive and is the process that had start time ``start`` (when one is known)."""
    if not pid_alive(pid) or _is_zombie(pid):
        return False
    if start is None:
        return True  # no /proc (macOS): the pid is all there is to go on
    return process_start_time(pid) == start


def wait_for_exit(pid: int) -> None:
    """Block until ``pid`` (not necessarily a child of ours) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        while pid_alive(pid) and not _is_zombie(pid):  # no pidfd: poll
            time.sleep(0.5)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def terminate(pid: int, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """SIGTERM the process group, wait up to ``timeout_s``, then SIGKILL it. True once it is gone.

    The whole group must be gone, not only ``pid``: while a driver starts, ``pid`` is a shell
    script whose child (the launcher JVM) is still running, and a child that ignores SIGTERM
    would otherwise outlive the driver it belongs to (seen with a hung start).
    """
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s, proc) and _group_gone(pid, deadline - time.monotonic()):
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return _wait_gone(pid, 5.0, proc) and _group_gone(pid, 5.0)


def _group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` until no live process is left in group ``pgid`` (zombies are gone)."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():  # no way to tell zombies apart here: the signal reached someone
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, group = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


def _wait_gone(pid: int, timeout_s: float, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid) or _is_zombie(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
