"""The shared archive of Spark's classes (``drivers.class_cache``): made once, mapped by later drivers.

The end-to-end test starts real drivers and waits for the real dump (about a minute): the first
driver records its classes, and once it stops, the archive appears, complete, and the next
driver maps it (its ``/proc/<pid>/maps`` lists the file) and answers queries. A damaged archive
(a JVM crashes on one) is removed and the driver started again without it.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import anyio
import pytest

from spark_mcp.app import App
from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.class_cache import CLASS_LIST, ClassCache, cache_key, complete_lines, default_dir, prune_others
from spark_mcp.errors import DriverStartError
from spark_mcp.spark.connect import open_session
from tests.helpers import make_config

pytestmark = pytest.mark.anyio

_DUMP_S = 420  # the dump runs at the lowest priority: on a busy 2-core machine it takes minutes


@pytest.fixture
def install(tmp_path: Path) -> tuple[Path, Path]:
    """A pretend Java and Spark install: only their files' names, sizes and times matter to the key."""
    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    (home / "conf").mkdir()
    for name in ("spark-core.jar", "spark-sql.jar"):
        (home / "jars" / name).write_bytes(b"jar")
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_bytes(b"java")
    return java, home


def _cache(install: tuple[Path, Path], tmp_path: Path) -> tuple[Path, ClassCache, Path]:
    """The pretend install's java, a cache in ``tmp_path``, and where its archive goes."""
    java, home = install
    cache = ClassCache(tmp_path / "cache", {}, home)
    archive = cache.archive(java)
    assert archive is not None
    return java, cache, archive


def test_the_key_changes_with_java_and_with_every_jar(install: tuple[Path, Path]) -> None:
    java, home = install
    first = cache_key(java, home)
    assert cache_key(java, home) == first
    jar = home / "jars" / "spark-sql.jar"
    jar.write_bytes(b"a newer jar")
    changed = cache_key(java, home)
    assert changed != first
    (home / "jars" / "extra.jar").write_bytes(b"x")
    assert cache_key(java, home) not in (first, changed)
    before = cache_key(java, home)
    os.utime(java, (1, 1))
    assert cache_key(java, home) != before


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        (b"", b""),
        (b"org/a/B", b""),
        (b"org/a/B\n", b"org/a/B\n"),
        (b"org/a/B\norg/a/C\norg/a/D", b"org/a/B\norg/a/C\n"),
    ],
)
def test_a_class_list_is_kept_to_its_last_whole_line(written: bytes, kept: bytes) -> None:
    assert complete_lines(written) == kept


def test_one_driver_records_at_a_time_and_later_ones_map_the_archive(
    install: tuple[Path, Path], tmp_path: Path
) -> None:
    java, home = install
    cache = ClassCache(tmp_path / "cache", {}, home)
    first = cache.java_options(java, "drv-1", tmp_path / "drv-1")
    assert first == [f"-XX:DumpLoadedClassList={tmp_path / 'drv-1' / CLASS_LIST}"]
    assert cache.java_options(java, "drv-2", tmp_path / "drv-2") == []  # one recording at a time
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    cache.stopped(java, "drv-2", tmp_path / "drv-2", was_ready=True, memory="1g")  # not the recording one
    cache.stopped(java, "drv-1", tmp_path / "drv-1", was_ready=False, memory="1g")  # never ready: no dump
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []
    # Its recording over, the next driver records.
    assert cache.java_options(java, "drv-3", tmp_path / "drv-3")[0].startswith("-XX:DumpLoadedClassList=")
    archive = cache.archive(java)
    assert archive is not None
    archive.write_bytes(b"an archive")
    assert cache.java_options(java, "drv-4", tmp_path / "drv-4") == [f"-XX:SharedArchiveFile={archive}"]
    cache.discard(java, "a test")
    assert not archive.exists()


@pytest.mark.parametrize(
    ("marker", "age_s", "records"),
    [("lock", 60, False), ("lock", 3600, True), ("failed", 3600, False), ("failed", 2 * 86400, True)],
)
def test_no_recording_while_a_dump_runs_or_for_a_day_after_one_failed(
    install: tuple[Path, Path], tmp_path: Path, marker: str, age_s: float, records: bool
) -> None:
    java, cache, archive = _cache(install, tmp_path)
    flag = archive.with_suffix(f".{marker}")
    flag.touch()
    os.utime(flag, (time.time() - age_s, time.time() - age_s))
    assert bool(cache.java_options(java, "drv-1", tmp_path)) is records


def test_a_folder_whose_path_spark_would_split_turns_it_off(install: tuple[Path, Path], tmp_path: Path) -> None:
    java, home = install
    cache = ClassCache(tmp_path / "my cache", {}, home)
    assert cache.java_options(java, "drv-1", tmp_path) == []
    assert not (tmp_path / "my cache").exists()


def test_a_failed_dump_leaves_no_archive_and_is_not_tried_again_soon(
    install: tuple[Path, Path], tmp_path: Path
) -> None:
    # A fake spark-submit that fails, as a dump can (a full disk): a real one fails on no demand.
    java, home = install
    submit = home / "bin" / "spark-submit"
    submit.parent.mkdir()
    submit.write_text('#!/bin/sh\necho "half an archive" > "$PARTIAL"\nexit 3\n')
    submit.chmod(0o700)
    cache = ClassCache(tmp_path / "cache", {"PATH": os.environ["PATH"]}, home)
    workdir = tmp_path / "drv-1"
    workdir.mkdir()
    assert cache.java_options(java, "drv-1", workdir)
    (workdir / CLASS_LIST).write_bytes(b"java/lang/Object\norg/apache/spark/Spark")
    cache.stopped(java, "drv-1", workdir, was_ready=True, memory="1g")
    archive = cache.archive(java)
    assert archive is not None
    deadline = time.monotonic() + 30
    while archive.with_suffix(".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    key = archive.stem
    assert names == [f"{key}.classes", f"{key}.dump.log", f"{key}.failed"]
    assert (tmp_path / "cache" / f"{key}.classes").read_bytes() == b"java/lang/Object\n"
    assert cache.java_options(java, "drv-2", workdir) == []


def _mapped(driver: Driver, archive: Path) -> bool:
    """Whether the driver's JVM mapped the archive (spark-submit execs java: its pid is the JVM's)."""
    assert driver.pid is not None
    return str(archive) in Path(f"/proc/{driver.pid}/maps").read_text()


def _argv(driver: Driver) -> list[bytes]:
    assert driver.pid is not None
    return Path(f"/proc/{driver.pid}/cmdline").read_bytes().split(b"\0")


def _app_config(tmp_path: Path, data_dir: Path) -> tuple[Path, Config]:
    """An app whose drivers keep their class archive in a folder of this test's own."""
    cache = tmp_path / "cache"
    return cache, make_config(tmp_path / "home", data_dir, datasets=[], driver={"class_cache_dir": str(cache)})


async def _answer(driver: Driver) -> int:
    def ask() -> int:
        session = open_session(driver, user_id="alice")
        try:
            return int(session.spark.sql("SELECT 41 + 1 AS answer").collect()[0]["answer"])
        finally:
            session.close()

    return await anyio.to_thread.run_sync(ask)


@pytest.mark.spark
async def test_the_first_driver_leaves_its_classes_and_the_next_ones_start_from_them(
    tmp_path: Path, data_dir: Path
) -> None:
    cache, config = _app_config(tmp_path, data_dir)
    async with App.running(config) as app:
        recorder = (await app.executor.create_session(app.principal("alice"))).driver
        assert any(b"-XX:DumpLoadedClassList=" in arg for arg in _argv(recorder))
        assert await _answer(recorder) == 42
    archives = list(cache.glob("*.jsa"))
    deadline = time.monotonic() + _DUMP_S
    while not archives and time.monotonic() < deadline:
        assert not list(cache.glob("*.failed")), _dump_log(cache)
        await anyio.sleep(1)
        archives = list(cache.glob("*.jsa"))
    assert len(archives) == 1, _dump_log(cache)
    archive = archives[0]
    await _until_gone(cache, "*.lock")
    assert not list(cache.glob("*.partial"))

    async with App.running(config) as app:
        driver = (await app.executor.create_session(app.principal("alice"))).driver
        assert _mapped(driver, archive)
        assert await _answer(driver) == 42

    # A driver that fails for another reason (a setting Spark refuses) leaves it be.
    broken = make_config(
        tmp_path / "home",
        data_dir,
        datasets=[],
        driver={"class_cache_dir": str(cache), "spark_conf": {"spark.memory.fraction": "5"}},
    )
    async with App.running(broken) as app:
        with pytest.raises(DriverStartError, match="before it was ready") as refused:
            await app.executor.create_session(app.principal("alice"))
    assert "spark.memory.fraction should be between 0 and 1" in str(refused.value)
    assert archive.is_file()

    # Cut in half: the JVM refuses it and starts as without one. It is removed for a new one.
    whole = archive.read_bytes()
    archive.chmod(0o600)
    archive.write_bytes(whole[: len(whole) // 2])
    async with App.running(config) as app:
        driver = (await app.executor.create_session(app.principal("alice"))).driver
        assert not _mapped(driver, archive)
        assert not archive.exists()
        assert await _answer(driver) == 42
        assert f"-XX:SharedArchiveFile={archive}".encode() in b" ".join(_argv(driver))  # it was offered
    assert not archive.exists()
    shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.spark
async def test_an_archive_the_jvm_crashes_on_costs_one_failed_start_not_the_service(
    tmp_path: Path, data_dir: Path
) -> None:
    cache, config = _app_config(tmp_path, data_dir)
    java = shutil.which("java")
    assert java is not None
    probe = ClassCache(cache, dict(os.environ))
    archive = probe.archive(Path(java))
    assert archive is not None
    # A real archive, cut short: a JVM mapping a truncated dynamic archive dies of SIGBUS.
    dynamic = tmp_path / "dynamic.jsa"
    await anyio.run_process([java, f"-XX:ArchiveClassesAtExit={dynamic}", "-version"])
    archive.write_bytes(dynamic.read_bytes()[: dynamic.stat().st_size // 2])
    async with App.running(config) as app:
        driver = (await app.executor.create_session(app.principal("alice"))).driver
        assert not archive.exists()
        assert not _mapped(driver, archive)
        assert await _answer(driver) == 42
        # Started again without it, it records anew; its dump is not this test's subject.
        assert any(b"-XX:DumpLoadedClassList=" in arg for arg in _argv(driver))
        archive.with_suffix(".lock").touch()
    crashed = [log for log in (tmp_path / "home" / "drivers").glob("*/driver.log") if "SIGBUS" in log.read_text()]
    assert len(crashed) == 1


async def _until_gone(cache: Path, pattern: str) -> None:
    deadline = time.monotonic() + 60
    while list(cache.glob(pattern)) and time.monotonic() < deadline:
        await anyio.sleep(0.2)
    assert not list(cache.glob(pattern))


def _dump_log(cache: Path) -> str:
    logs = list(cache.glob("*.dump.log"))
    return logs[0].read_text(errors="replace")[-2000:] if logs else "(no dump log)"


@pytest.mark.parametrize(
    ("present", "says"),
    [
        (None, "not made yet: the first driver that stops leaves it in"),
        ("lock", "being made now"),
        ("failed", "the last attempt failed"),
        ("jsa", "MiB): drivers start from it"),
    ],
)
def test_doctor_says_where_the_archive_stands(
    install: tuple[Path, Path], tmp_path: Path, present: str | None, says: str
) -> None:
    java, cache, archive = _cache(install, tmp_path)
    if present is not None:
        archive.with_suffix(f".{present}").write_bytes(b"x")
    assert says in cache.status(java)
    assert ClassCache(None, {}, install[1]).status(java).startswith("off")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_CACHE_HOME": "/var/cache/me", "HOME": "/home/me"}, "/var/cache/me/spark-mcp/jvm"),
        ({"XDG_CACHE_HOME": "", "HOME": "/home/me"}, "/home/me/.cache/spark-mcp/jvm"),
        ({"XDG_CACHE_HOME": "relative/cache", "HOME": "/home/me"}, "/home/me/.cache/spark-mcp/jvm"),
        ({"HOME": "/home/me"}, "/home/me/.cache/spark-mcp/jvm"),
        ({"HOME": "not/absolute"}, str(Path.home() / ".cache" / "spark-mcp" / "jvm")),
    ],
)
def test_the_default_folder_follows_the_xdg_rule(environ: dict[str, str], expected: str) -> None:
    assert default_dir(environ) == Path(expected)


@pytest.mark.parametrize(
    ("offered", "log", "blamed"),
    [
        (True, "#\n# A fatal error has been detected by the Java Runtime Environment:\n#  SIGBUS (0x7)", True),
        (True, "[0.012s][error][cds] An error has occurred while processing the shared archive file.", True),
        (True, "Exception in thread main: spark.memory.fraction should be between 0 and 1", False),
        (False, "# A fatal error has been detected by the Java Runtime Environment:", False),
    ],
)
def test_only_a_driver_that_died_of_the_archive_has_it_removed(
    install: tuple[Path, Path], tmp_path: Path, offered: bool, log: str, blamed: bool
) -> None:
    java, cache, archive = _cache(install, tmp_path)
    archive.write_bytes(b"an archive")
    if not offered:
        archive.unlink()
    cache.java_options(java, "drv-1", tmp_path)
    if not offered:
        archive.write_bytes(b"made meanwhile")
    (tmp_path / "driver.log").write_text(log)
    assert cache.to_blame(java, "drv-1", tmp_path / "driver.log") is blamed
    assert archive.exists() is not blamed
    cache.settled("drv-1")
    assert cache.to_blame(java, "drv-1", tmp_path / "driver.log") is False  # its start is over


_DAY = 24 * 3600.0


# (other installs' archives: key -> days since a driver last used it, a dump running?), kept keys.
@pytest.mark.parametrize(
    ("others", "kept"),
    [
        ({}, set()),
        ({"a": (1, False), "b": (2, False)}, {"a", "b"}),
        ({"a": (1, False), "b": (2, False), "c": (3, False)}, {"a", "b"}),  # only the two used last
        ({"a": (1, False), "b": (31, False)}, {"a"}),  # unused for 30 days
        ({"a": (1, False), "b": (2, False), "c": (3, True)}, {"a", "c"}),  # c's dump runs: in use now
        ({"a": (40, True)}, {"a"}),  # unused for long, but its dump runs
    ],
)
def test_other_installs_archives_are_pruned_to_the_two_used_last_and_none_unused_for_a_month(
    tmp_path: Path, others: dict[str, tuple[int, bool]], kept: set[str]
) -> None:
    now = time.time()
    ours = [tmp_path / "mine.jsa", tmp_path / "mine.classes"]
    for path in ours:
        path.write_bytes(b"x")
        os.utime(path, (now - 90 * _DAY, now - 90 * _DAY))  # this install's own: never pruned
    for key, (days, dumping) in others.items():
        (tmp_path / f"{key}.classes").write_bytes(b"x")
        os.utime(tmp_path / f"{key}.classes", (now - 60 * _DAY, now - 60 * _DAY))  # recorded long ago
        (tmp_path / f"{key}.jsa").write_bytes(b"x")
        os.utime(tmp_path / f"{key}.jsa", (now - days * _DAY, now - days * _DAY))  # last mapped
        if dumping:
            (tmp_path / f"{key}.lock").write_bytes(b"")
    prune_others(tmp_path, "mine", now=now)
    left = {path.name.split(".", 1)[0] for path in tmp_path.iterdir()}
    assert left == kept | {"mine"}
    for key in kept:
        assert (tmp_path / f"{key}.jsa").exists() and (tmp_path / f"{key}.classes").exists()
