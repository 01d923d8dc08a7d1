"""``spark-mcp``: serve, doctor, drivers, audit, policy, call.

Only ``serve`` speaks MCP; it writes nothing to stdout but the protocol. The other
commands are for people and print to stdout. This package is the only code that prints:
the parser and ``main`` here, one module per command (``serve``, ``tokens``, ``doctor``,
``drivers``, ``audit``, ``policy``, ``call``), and ``common`` for the configuration they share.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from spark_mcp import __version__
from spark_mcp.cli.audit import cmd_audit
from spark_mcp.cli.call import cmd_call
from spark_mcp.cli.doctor import cmd_doctor
from spark_mcp.cli.drivers import cmd_drivers
from spark_mcp.cli.output import err
from spark_mcp.cli.policy import cmd_policy
from spark_mcp.cli.serve import cmd_serve
from spark_mcp.cli.tokens import cmd_tokens
from spark_mcp.errors import SparkMcpError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spark-mcp", description="An MCP server for governed Apache Spark.")
    parser.add_argument("--version", action="version", version=f"spark-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="config file (default: $SPARK_MCP_CONFIG, else ./spark-mcp.toml if present)")
        p.add_argument("--home", help="state directory (default: $SPARK_MCP_HOME, else a per-user data dir)")
        p.add_argument(
            "--policies", action="append", help="a policy file or directory; repeat for more (default: policies/)"
        )

    serve = sub.add_parser("serve", help="run the MCP server (stdio, or streamable HTTP for a team)")
    common(serve)
    serve.add_argument("--user", help="who the stdio caller is (default: $SPARK_MCP_USER, else the OS user)")
    serve.add_argument("--transport", choices=["stdio", "http"], help="default: server.transport, else stdio")
    serve.add_argument("--host", help="HTTP: the address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP: the port (default 8000)")
    serve.add_argument("--tls-cert", help="HTTP: PEM certificate chain (with --tls-key: HTTPS)")
    serve.add_argument("--tls-key", help="HTTP: PEM private key")
    serve.add_argument(
        "--gateway-port", type=int, help="also serve the Spark Connect gateway on this port (e.g. 15002)"
    )
    serve.add_argument("--gateway-host", help="the gateway's address (default 127.0.0.1)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens for the HTTP transport")
    common(tokens)
    tokens_sub = tokens.add_subparsers(dest="action", required=True)
    create = tokens_sub.add_parser("create", help="make a token and print it once")
    create.add_argument("--user", dest="token_user", required=True, help="the principal the token acts as")
    create.add_argument(
        "--scopes", nargs="+", help="default: [auth] scopes plus the write scope (spark:read spark:write)"
    )
    create.add_argument("--expires", default="90d", help="lifetime: 30d, 12h, 2w... or never (default 90d)")
    create.add_argument("--name", help="a label to recognise it by")
    create.add_argument("--resource", help="the server URL it is for (default: this config's resource URL)")
    tokens_list = tokens_sub.add_parser("list", help="tokens and their state (never the secrets)")
    tokens_list.add_argument("--user", dest="token_user")
    tokens_list.add_argument("--json", action="store_true")
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by id; refused from the next request on")
    revoke.add_argument("token_id")
    tokens.set_defaults(func=cmd_tokens)

    doctor = sub.add_parser("doctor", help="check Java, Spark, ports, state directory and config")
    common(doctor)
    doctor.add_argument("--start-driver", action="store_true", help="also start a driver and run SELECT 1")
    doctor.set_defaults(func=cmd_doctor)

    drivers = sub.add_parser("drivers", help="see and stop the drivers of this home, and which server owns each")
    common(drivers)
    drivers_sub = drivers.add_subparsers(dest="action", required=True)
    drivers_list = drivers_sub.add_parser("list")
    drivers_list.add_argument("--json", action="store_true")
    stop = drivers_sub.add_parser("stop")
    stop.add_argument("driver_id", nargs="?")
    stop.add_argument("--all", action="store_true")
    drivers.set_defaults(func=cmd_drivers)

    audit = sub.add_parser("audit", help="verify or read the audit log")
    common(audit)
    audit.add_argument("--path", help="audit file (default: <home>/audit/audit.jsonl)")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    audit_verify = audit_sub.add_parser("verify")
    # The form the audit log's own messages suggest: spark-mcp audit verify <path>.
    audit_verify.add_argument("verify_path", nargs="?", metavar="path", help="audit file (same as --path)")
    audit_tail = audit_sub.add_parser("tail")
    audit_tail.add_argument("-n", type=int, default=20)
    audit_tail.add_argument("--user", dest="filter_user")
    audit.set_defaults(func=cmd_audit)

    policy = sub.add_parser("policy", help="check policy files or explain a decision")
    common(policy)
    policy_sub = policy.add_subparsers(dest="action", required=True)
    policy_sub.add_parser("check")
    explain = policy_sub.add_parser("explain")
    explain.add_argument("--user", dest="explain_user", required=True)
    explain.add_argument("--sql", required=True)
    policy.set_defaults(func=cmd_policy)

    call = sub.add_parser("call", help="call one tool in-process and print the reply")
    common(call)
    call.add_argument("tool")
    call.add_argument("--args", help="tool arguments as JSON")
    call.add_argument("--user", help="who is calling")
    call.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    call.set_defaults(func=cmd_call)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "drivers" and args.action == "stop" and not args.all and not args.driver_id:
        err("name a driver id, or use --all")
        return 2
    try:
        return int(args.func(args))
    except SparkMcpError as exc:
        err(f"spark-mcp: {exc.code}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
