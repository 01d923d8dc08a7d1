"""``spark-mcp serve`` must not import pyspark, pandas, numpy, pyarrow or grpc on its way to the handshake.

Why: the first answer after ``serve`` (issue 12: under 2 s on Sail). Those imports cost about
a second on this machine; made with the modules the server imports, they delayed the MCP
handshake. Imported where they are used instead, they load on the thread that prepares the
first driver (``App.prepare_driver`` -> ``spark.connect.open_session``), while the driver boots
and the client shakes hands. A module-level ``import pyspark...`` (or pyarrow) anywhere on the
server's import chain breaks this; use ``if TYPE_CHECKING:`` for annotations and import inside
the function for runtime use (ruff's TC004 flags a runtime use of a type-checking import).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("grpc", "numpy", "pandas", "pyarrow", "pyspark")


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_server_loads_no_spark_arrow_or_grpc() -> None:
    assert loaded_after("import spark_mcp.server, spark_mcp.app, spark_mcp.cli.serve") == []


def test_the_first_session_s_imports_load_them_so_the_probe_sees_them() -> None:
    # The same probe, after what open_session runs first: shows the check above can fail.
    code = "import spark_mcp.server, spark_mcp.app\nfrom spark_mcp.spark import connect\nconnect.load_client()"
    assert loaded_after(code) == ["grpc", "numpy", "pandas", "pyarrow", "pyspark"]
