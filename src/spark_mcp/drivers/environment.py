"""Where Spark and Java live, and whether they are good enough to run a driver."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIN_JAVA = 17


def spark_home() -> Path:
    """The installed pyspark package folder: it carries Spark's jars and ``bin/spark-submit``."""
    import pyspark  # only drivers/ and spark/ import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_version() -> str:
    """pyspark's version, from its installed metadata: importing pyspark (and with it pandas) takes
    most of a second, which a Sail driver's start should not wait for (issue 12)."""
    try:
        return importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:  # pyspark from a source tree, without metadata
        import pyspark

        return str(pyspark.__version__)


def java_executable(java_home: str | None, environ: Mapping[str, str]) -> Path | None:
    """``java`` from the configured JAVA_HOME, else the environment's JAVA_HOME, else PATH."""
    home = java_home or environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return candidate if candidate.is_file() else None
    found = shutil.which("java", path=environ.get("PATH", os.defpath))
    return Path(found) if found else None


@dataclass(frozen=True)
class JavaCheck:
    executable: Path | None
    version: int | None
    problem: str | None  # None when Java is usable


def check_java(java_home: str | None, environ: Mapping[str, str]) -> JavaCheck:
    java = java_executable(java_home, environ)
    if java is None:
        where = (
            f"JAVA_HOME={java_home or environ.get('JAVA_HOME')}" if (java_home or environ.get("JAVA_HOME")) else "PATH"
        )
        return JavaCheck(
            None,
            None,
            f"no java found on {where}: install Java {MIN_JAVA}+ "
            "(e.g. apt install openjdk-17-jre-headless) or set driver.java_home",
        )
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return JavaCheck(java, None, f"{java} -version failed: {exc}")
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return JavaCheck(java, None, f"could not read the version printed by {java} -version")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        return JavaCheck(java, major, f"Java {major} found at {java}; Spark 4 needs Java {MIN_JAVA}+")
    return JavaCheck(java, major, None)
