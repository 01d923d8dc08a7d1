"""A shared archive of the classes Spark drivers load: drivers start in about half the time.

The JVM's class-data sharing (CDS) maps classes parsed and verified once from an archive, where
a start would otherwise load about 19,000 of them from Spark's jars. Measured on a 2-core VM
(``benchmarks/driver_start.py``: JDK 17, Spark 4.3, ``local[2]``): a driver ready in 3.8 s
instead of 6.2 s, and its first ``SELECT 1`` in 1.8 s instead of 3.3 s. Nothing is done by hand:

1. While no archive exists for this Java and these jars (``key``), the next driver started
   records the classes it loads (``-XX:DumpLoadedClassList``, written as they load). One
   recording at a time per server; none while another server's dump is under way or after a
   dump failed in the last day.
2. When that driver stops, after it got ready, the complete lines of its list are copied out of
   its folder, and a JVM started like a driver, at the lowest priority and detached (it
   finishes if the server stops), dumps the archive (about 40 s of CPU, once per install) to a
   temporary name. It is renamed into place only when the dump succeeded: a JVM crashes on a
   partial archive, so none is ever offered.
3. Every later driver maps it (``-XX:SharedArchiveFile``). When a driver's JVM did not map it
   (the JVM refuses a stale or damaged archive and starts as without one), or exited before it
   was ready with it (a JVM can crash on a damaged one), the archive is removed, the driver
   started again without it in the second case, and a later driver records a new one.

The key covers the java binary and every file of the class path (name, size, modification
time), so an upgrade of Java or pyspark makes a new archive; the JVM itself also refuses an
archive whose class path changed, and then starts as without one. The folder
(``driver.class_cache_dir``, default ``~/.cache/spark-mcp/jvm``, 0700) is shared by every
server of the user, the test suite included. It adds no exposure: the archive is code the
drivers run, as the jars it is made from are, and both are writable only by the server's user.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.environment import spark_home
from spark_mcp.drivers.files import ensure_private_dir, write_private

log = structlog.get_logger(__name__)

CLASS_LIST = "classes.lst"  # in a recording driver's own folder
_LOCK_STALE_S = 30 * 60  # a dump takes about a minute; an older lock outlived its dump
_RETRY_AFTER_FAILURE_S = 24 * 3600
_UNUSED_S = 30 * 24 * 3600  # an archive of another install not used for this long is removed
_KEEP_OTHER_INSTALLS = 2  # and at most this many other installs' archives are kept
_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# How a JVM dies of a damaged archive: a crash of the JVM itself (SIGBUS, SIGSEGV, with its
# banner), or its own words about the archive. A setting Spark refuses says neither.
_ARCHIVE_TROUBLE = re.compile(
    r"A fatal error has been detected by the Java Runtime Environment|shared archive|\[error\]\[cds", re.IGNORECASE
)
# The dump JVM runs under this, so that the archive appears only complete and a failure is
# remembered; in the background, so that the shell started exits at once and the dump is nobody's
# child to wait for (it goes on if the server stops: a dump cut short would only be wasted).
_DUMP_SCRIPT = '( "$@" && mv -f "$PARTIAL" "$ARCHIVE" || { rm -f "$PARTIAL"; touch "$FAILED"; }; rm -f "$LOCK" ) &'


def default_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/spark-mcp/jvm``, else ``~/.cache/spark-mcp/jvm``: a relative path is
    ignored (the XDG rule), as it would mean another folder to each driver (its own cwd)."""
    cache = Path(environ.get("XDG_CACHE_HOME") or "")
    if not cache.is_absolute():
        home = Path(environ.get("HOME") or "")
        cache = (home if home.is_absolute() else Path.home()) / ".cache"
    return cache / "spark-mcp" / "jvm"


def cache_key(java: Path, spark_home: Path) -> str:
    """What an archive is valid for: the java binary and every file of a driver's class path."""
    digest = hashlib.sha256()
    real_java = java.resolve()
    for path in (real_java, *sorted((spark_home / "jars").iterdir()), *sorted((spark_home / "conf").glob("*"))):
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def complete_lines(data: bytes) -> bytes:
    """A class list as far as its last whole line: a driver killed mid-write leaves half of one."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def _fresh(path: Path, max_age_s: float, now: float) -> bool:
    try:
        return now - path.stat().st_mtime < max_age_s
    except OSError:
        return False


class ClassCache:
    """The archive of one Java and one Spark install, and the recording of a new one."""

    def __init__(self, directory: Path | None, environ: Mapping[str, str], home: Path | None = None) -> None:
        self.directory = directory  # None: off
        self._home = home  # Spark's (pyspark's folder), found when first needed: a Sail-only server never does
        self._environ = environ
        self._key: str | None = None
        self._recording: str | None = None  # the id of the driver recording its classes
        self._offered: set[str] = set()  # drivers starting with the archive
        if directory is not None and any(c.isspace() or c in "\"'\\" for c in str(directory)):
            # Spark splits driver Java options on spaces: such a path would not reach the JVM whole.
            log.warning("class_cache.off", reason="its folder's path has spaces or quotes", path=str(directory))
            self.directory = None

    @classmethod
    def for_config(cls, config: Config, environ: Mapping[str, str]) -> ClassCache:
        """The archive ``config`` asks for (``driver.class_cache``, ``driver.class_cache_dir``)."""
        directory = config.driver.class_cache_dir or default_dir(environ)
        return cls(directory if config.driver.class_cache else None, environ)

    @property
    def _spark_home(self) -> Path:
        if self._home is None:
            self._home = spark_home()
        return self._home

    def _paths(self, java: Path) -> tuple[Path, str] | None:
        if self.directory is None:
            return None
        try:
            directory = ensure_private_dir(self.directory)
            if directory.stat().st_uid != os.getuid():
                raise PermissionError("it belongs to another user")
            if self._key is None:
                self._key = cache_key(java, self._spark_home)
        except OSError as exc:
            # Drivers start as well without it, only slower.
            log.warning("class_cache.off", reason=str(exc), path=str(self.directory))
            self.directory = None
            return None
        return directory, self._key

    def archive(self, java: Path) -> Path | None:
        paths = self._paths(java)
        return None if paths is None else paths[0] / f"{paths[1]}.jsa"

    def java_options(self, java: Path, driver_id: str, workdir: Path) -> list[str]:
        """The options that map the archive into a new driver, or have it record its classes."""
        paths = self._paths(java)
        if paths is None:
            return []
        directory, key = paths
        archive = directory / f"{key}.jsa"
        if archive.is_file():
            if not _fresh(archive, 24 * 3600, time.time()):
                os.utime(archive)  # in use: not pruned as another install's (``prune_others``)
            self._offered.add(driver_id)
            return [f"-XX:SharedArchiveFile={archive}"]
        now = time.time()
        busy = _fresh(directory / f"{key}.lock", _LOCK_STALE_S, now)
        if self._recording is not None or busy or _fresh(directory / f"{key}.failed", _RETRY_AFTER_FAILURE_S, now):
            return []
        self._recording = driver_id
        log.info("class_cache.recording", driver_id=driver_id, archive=str(archive))
        return [f"-XX:DumpLoadedClassList={workdir / CLASS_LIST}"]

    def status(self, java: Path) -> str:
        """What ``spark-mcp doctor`` says about the archive (it changes nothing)."""
        if self.directory is None:
            return "off: drivers load Spark's classes from its jars at every start"
        directory, key = self.directory, cache_key(java, self._spark_home)
        archive, now = directory / f"{key}.jsa", time.time()
        if archive.is_file():
            return f"{archive} ({archive.stat().st_size // 2**20} MiB): drivers start from it"
        if _fresh(directory / f"{key}.lock", _LOCK_STALE_S, now):
            return f"being made now (its log: {directory / f'{key}.dump.log'})"
        if _fresh(directory / f"{key}.failed", _RETRY_AFTER_FAILURE_S, now):
            return f"the last attempt failed (see {directory / f'{key}.dump.log'}); tried again a day later"
        return f"not made yet: the first driver that stops leaves it in {directory} (about 40 s of CPU, once)"

    def started(self, java: Path, driver_id: str, pid: int | None) -> None:
        """A driver got ready. When it was offered the archive and its JVM did not map it (the
        JVM refuses a stale or damaged archive, and starts as without one), it is removed for a
        new one."""
        archive = self.archive(java)
        if driver_id in self._offered and pid is not None and archive is not None and mapped(pid, archive) is False:
            self.discard(java, "the driver's JVM did not map it (stale or damaged)")

    def to_blame(self, java: Path, driver_id: str, log_path: Path) -> bool:
        """A driver failed to start: True when it was offered the archive and died of it (then the
        archive is removed, and the caller starts the driver again). A driver that failed for
        another reason keeps it: without it, it would fail all the same."""
        if driver_id not in self._offered:
            return False
        try:
            trouble = _ARCHIVE_TROUBLE.search(log_path.read_text(errors="replace")) is not None
        except OSError:
            trouble = False
        if trouble:
            self.discard(java, f"driver {driver_id} died of it before it was ready")
        return trouble

    def settled(self, driver_id: str) -> None:
        """The start of ``driver_id`` is over, one way or another."""
        self._offered.discard(driver_id)

    def discard(self, java: Path, why: str) -> None:
        archive = self.archive(java)
        if archive is not None and archive.exists():
            archive.unlink(missing_ok=True)
            log.warning("class_cache.discarded", archive=str(archive), why=why)

    def stopped(self, java: Path, driver_id: str, workdir: Path, *, was_ready: bool, memory: str) -> None:
        """A driver stopped: when it recorded its classes and got ready, dump them into the archive."""
        if driver_id != self._recording:
            return
        self._recording = None
        paths = self._paths(java)
        if paths is None or not was_ready:
            return
        directory, key = paths
        try:
            classes = complete_lines((workdir / CLASS_LIST).read_bytes())
        except OSError:
            return
        if not classes:
            return
        lock = directory / f"{key}.lock"
        if not _take(lock):
            return  # another server dumps it
        try:
            prune_others(directory, key)
            listed = directory / f"{key}.classes"
            write_private(listed, classes)
            self._dump(java, directory, key, listed, memory)
        except OSError as exc:
            lock.unlink(missing_ok=True)
            log.warning("class_cache.dump_failed", error=str(exc))

    def _dump(self, java: Path, directory: Path, key: str, listed: Path, memory: str) -> None:
        partial = directory / f"{key}.jsa.partial"
        options = f"-Xshare:dump -XX:SharedClassListFile={listed} -XX:SharedArchiveFile={partial} -Xlog:cds=error"
        # Started as drivers are (spark-submit), so the archive has their class path and modules.
        submit = [
            str(self._spark_home / "bin" / "spark-submit"),
            *("--class", _SERVER_CLASS, "--master", "local[1]", "--driver-memory", memory),
            *("--conf", f"spark.driver.extraJavaOptions={options}", "spark-internal"),
        ]
        nice = shutil.which("nice")
        argv = ["/bin/sh", "-c", _DUMP_SCRIPT, "dump", *([nice, "-n", "19"] if nice else []), *submit]
        env = {
            k: v
            for k, v in self._environ.items()
            if not k.startswith("SPARK_MCP_") and k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"
        }
        env.update(
            SPARK_HOME=str(self._spark_home),
            JAVA_HOME=str(java.parent.parent),  # <home>/bin/java: the very java drivers run on
            PARTIAL=str(partial),
            ARCHIVE=str(directory / f"{key}.jsa"),
            FAILED=str(directory / f"{key}.failed"),
            LOCK=str(directory / f"{key}.lock"),
        )
        fd = os.open(directory / f"{key}.dump.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            subprocess.run(
                argv, env=env, cwd=directory, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, check=True, timeout=30,
            )  # fmt: skip
        except subprocess.SubprocessError as exc:
            raise OSError(f"the dump did not start: {exc}") from exc
        finally:
            os.close(fd)
        log.info("class_cache.dumping", archive=str(directory / f"{key}.jsa"), log=str(directory / f"{key}.dump.log"))


def mapped(pid: int, archive: Path) -> bool | None:
    """Whether process ``pid`` maps ``archive``; None where ``/proc`` cannot tell."""
    try:
        return str(archive) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None


def _take(lock: Path) -> bool:
    """The dump's lock, unless a dump under way holds it (one that outlived ``_LOCK_STALE_S`` died)."""
    for _ in range(2):
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return True
        except FileExistsError:
            if _fresh(lock, _LOCK_STALE_S, time.time()):
                return False
            lock.unlink(missing_ok=True)
    return False


def prune_others(directory: Path, key: str, now: float | None = None) -> None:
    """Remove what other installs left (an archive is 200 MB, and every fresh checkout or
    virtual environment is another install): all of one once no driver used it for
    ``_UNUSED_S``, and all but the ``_KEEP_OTHER_INSTALLS`` used last. An install whose dump
    runs (a lock that is not stale) is left alone."""
    now = time.time() if now is None else now
    others: dict[str, list[Path]] = {}
    for path in directory.iterdir():
        owner = path.name.split(".", 1)[0]
        if owner != key:
            others.setdefault(owner, []).append(path)
    ranked = sorted(others.values(), key=lambda paths: max(map(_mtime, paths)), reverse=True)
    for rank, paths in enumerate(ranked):
        if any(p.suffix == ".lock" and _fresh(p, _LOCK_STALE_S, now) for p in paths):
            continue
        if rank >= _KEEP_OTHER_INSTALLS or not any(_fresh(p, _UNUSED_S, now) for p in paths):
            for path in paths:
                path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
