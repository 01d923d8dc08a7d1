"""``spark-mcp audit``: verify or read the audit log."""

from __future__ import annotations

import argparse
from pathlib import Path

from spark_mcp.cli.common import config_from
from spark_mcp.cli.output import err, out


def cmd_audit(args: argparse.Namespace) -> int:
    from spark_mcp.audit import tail, verify

    given = getattr(args, "verify_path", None)
    if given and args.path and Path(given) != Path(args.path):
        err(f"two different audit files given: {args.path} and {given}")
        return 2
    given = given or args.path
    path = Path(given) if given else config_from(args).audit_path
    if args.action == "verify":
        report = verify(path)
        for problem in report.problems:
            out(f"✘ {problem}")
        out(
            f"{'✔' if report.ok else '✘'} {path}: {report.records} records, chain {'intact' if report.ok else 'BROKEN'}"
        )
        return 0 if report.ok else 1
    for record in tail(path, args.n, principal=args.filter_user):
        out(record.model_dump_json())
    return 0
