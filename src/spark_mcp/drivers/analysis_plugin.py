"""The gateway's analysis plugin: a relation's schema and its analyzed plan in one analysis.

The gateway must read Spark's analyzed plan of every relation a client analyses or runs. A
client's ``df.schema`` (which PySpark asks before most actions) is an analysis of its own, so
without help the driver analyses each such relation twice: the client's schema, and the
gateway's ``EXPLAIN``. ``AnalysisPlugin.java``, a Spark Connect relation plugin, answers both
with one: an ``AnalyzePlan(schema)`` of the relation wrapped in the plugin's extension
(``spark.wire.requests.analysed_relation``) returns the relation's own columns, then one more
whose name is the plan text ``EXPLAIN EXTENDED`` prints (its parsed and analyzed sections).
On a warm driver that is the client's schema call plus about a millisecond, where the schema
and the ``EXPLAIN`` side by side took three times as long (``benchmarks/gateway.py``).

The plugin is compiled here, by the Java compiler of the very ``java`` drivers run on (a
JRE's ``jdk.compiler`` module serves: no JDK needed), against this pyspark's jars, into a jar
kept beside the class archive (``driver.class_cache_dir``): once per Java, Spark install and
plugin source (``_jar_name``), about 3 s, before the first driver that needs it starts. Drivers
load it through ``spark.jars``, which leaves the JVM's class path, and so the class archive,
as it is. When it cannot be made (no compiler module, an unwritable folder), drivers start
without it and the gateway explains relations as before: slower, governed the same.
Whether a driver has it is checked on the driver itself (``spark.bootstrap``), so adopted
drivers and other backends (Kubernetes pods run their image's jars) need no bookkeeping.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.class_cache import cache_key, default_dir
from spark_mcp.drivers.environment import spark_home
from spark_mcp.drivers.files import ensure_private_dir

log = structlog.get_logger(__name__)

SOURCE = Path(__file__).with_name("AnalysisPlugin.java")
CLASS_NAME = "dev.sparkmcp.AnalysisPlugin"
_COMPILE_TIMEOUT_S = 60  # about 3 s here; and never longer than a driver's start may take
# spark.jars is a comma-separated list of paths Spark turns into URIs: keep to plain paths.
_UNSAFE_PATH_CHARACTERS = frozenset(",\"'\\") | frozenset(" \t\n\r")


def settings(jar: Path) -> list[tuple[str, str]]:
    """The driver settings that load the plugin (managed keys: no config may set them)."""
    return [("spark.jars", str(jar)), ("spark.connect.extensions.relation.classes", CLASS_NAME)]


class AnalysisPluginJar:
    """The compiled plugin of one Java and one Spark install, made when first asked for."""

    def __init__(self, directory: Path | None, home: Path | None = None, timeout_s: float = _COMPILE_TIMEOUT_S) -> None:
        self.directory = directory  # None: off
        self._home = home
        self._timeout_s = timeout_s
        self._failed = False  # tried once in this process and failed: drivers go without it
        self._names: dict[Path, str] = {}  # by java: the install's key stats every jar, once is enough
        if directory is not None and _UNSAFE_PATH_CHARACTERS & set(str(directory)):
            log.warning("analysis_plugin.off", reason="its folder's path has spaces, commas or quotes")
            self.directory = None

    @classmethod
    def for_config(cls, config: Config, environ: Mapping[str, str]) -> AnalysisPluginJar:
        """``driver.analysis_plugin``, kept in the class archive's folder (``driver.class_cache_dir``)."""
        directory = config.driver.class_cache_dir or default_dir(environ)
        # Compiling is part of the first driver's start: it gets no longer than a start does.
        timeout_s = min(_COMPILE_TIMEOUT_S, config.driver.startup_timeout_s)
        return cls(directory if config.driver.analysis_plugin else None, timeout_s=timeout_s)

    def status(self, java: Path) -> str:
        """What ``spark-mcp doctor`` says about the plugin (it changes nothing)."""
        if self.directory is None:
            return "off: the gateway explains plans, and a client's schema costs a second analysis"
        jar = self.directory / self._name(java)
        if jar.is_file():
            return f"{jar}: local and standalone drivers load it"
        return f"not made yet: the next driver's start compiles it into {self.directory} (about 3 s, once)"

    def jar(self, java: Path) -> Path | None:
        """The plugin's jar for drivers run by ``java``: compiled first if need be (blocking, ~3 s
        once per install: call it off the event loop). None when it is off or cannot be made."""
        if self.directory is None or self._failed:
            return None
        try:
            directory = ensure_private_dir(self.directory)
            if directory.stat().st_uid != os.getuid():
                raise PermissionError("it belongs to another user")
            jar = directory / self._name(java)
            if not jar.is_file():
                _compile(java, self._spark_home(), jar, self._timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            self._failed = True
            log.warning("analysis_plugin.off", reason=str(exc)[:500], folder=str(self.directory))
            return None
        return jar

    def _spark_home(self) -> Path:
        if self._home is None:
            self._home = spark_home()
        return self._home

    def _name(self, java: Path) -> str:
        if java not in self._names:
            self._names[java] = _jar_name(java, self._spark_home())
        return self._names[java]


def _jar_name(java: Path, home: Path) -> str:
    """What a jar is valid for: the Java and Spark install, and the source. It starts with the
    class archive's key, as that install's files do: the archive's pruning (``prune_others``)
    removes it with them."""
    return f"{cache_key(java, home)}.analysis-plugin-{hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]}.jar"


def _compile(java: Path, home: Path, jar: Path, timeout_s: float) -> None:
    """javac, run as the JRE's own compiler module, then the classes zipped into ``jar``.

    The classes are compiled in a scratch folder elsewhere (the archive's folder holds only
    files), and the jar is written under a temporary name and renamed into place, so that
    servers compiling at the same time each leave a whole jar and a driver never loads half
    of one."""
    class_path = os.pathsep.join(str(p) for p in sorted((home / "jars").glob("*.jar")))
    with tempfile.TemporaryDirectory(prefix="spark-mcp-analysis-plugin-") as scratch:
        classes = Path(scratch) / "classes"
        command = [str(java), "-m", "jdk.compiler/com.sun.tools.javac.Main", "-nowarn", "-d", str(classes)]
        try:
            result = subprocess.run(
                [*command, "-cp", class_path, str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise subprocess.SubprocessError(f"compiling {SOURCE.name} took longer than {timeout_s:g} s") from None
        if result.returncode != 0:
            said = (result.stderr or result.stdout)[-400:]
            raise subprocess.SubprocessError(f"compiling {SOURCE.name} failed: {said}")
        # A name of its own: drivers of one server may start, and compile, at the same time.
        handle, name = tempfile.mkstemp(prefix=f"{jar.name}.", suffix=".partial", dir=jar.parent)
        os.close(handle)
        partial = Path(name)
        try:
            with zipfile.ZipFile(partial, "w") as archive:
                for path in sorted(classes.rglob("*.class")):
                    archive.write(path, path.relative_to(classes).as_posix())
            os.replace(partial, jar)
        finally:
            partial.unlink(missing_ok=True)
    log.info("analysis_plugin.compiled", jar=str(jar))
