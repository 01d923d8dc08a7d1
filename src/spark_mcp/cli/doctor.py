"""``spark-mcp doctor``: check Java, Spark, ports, the state directory and the config."""

from __future__ import annotations

import argparse
import os

from spark_mcp.cli.common import config_from
from spark_mcp.cli.output import out
from spark_mcp.errors import SparkMcpError


def cmd_doctor(args: argparse.Namespace) -> int:
    from spark_mcp.doctor import run_checks

    try:
        config = config_from(args)
    except SparkMcpError as exc:
        out(f"✘ configuration: {exc}")
        return 1
    ok = True
    for check in run_checks(config, dict(os.environ), start_driver=args.start_driver):
        mark = "✔" if check.ok else "✘"
        out(f"{mark} {check.name}: {check.detail}")
        if not check.ok:
            ok = False
            if check.fix:
                out(f"    fix: {check.fix}")
    out("all good" if ok else "some checks failed")
    return 0 if ok else 1
