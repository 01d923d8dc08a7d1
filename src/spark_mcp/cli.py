"""``spark-mcp``: serve, doctor, drivers, audit, policy, call.

Only ``serve`` speaks MCP; it writes nothing to stdout but the protocol. The other
commands are for people and print to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from spark_mcp import __version__
from spark_mcp.config import Config, load_config
from spark_mcp.errors import ConfigError, SparkMcpError
from spark_mcp.logs import configure_logging


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "home", None):
        overrides["home"] = args.home
    if getattr(args, "user", None):
        overrides["user"] = args.user
    if getattr(args, "log_level", None):
        overrides["server"] = {"log_level": args.log_level}
    if getattr(args, "policies", None):
        overrides["policies"] = args.policies
    server = {
        key: value
        for key in ("transport", "host", "port", "tls_cert", "tls_key")
        if (value := getattr(args, key, None)) is not None
    }
    if server:
        overrides["server"] = {**overrides.get("server", {}), **server}
    return load_config(Path(args.config) if args.config else None, overrides=overrides)


# -- serve -------------------------------------------------------------------------------


async def _serve_stdio(config: Config) -> None:
    """Serve until the host closes stdin or signals us; either way every driver is stopped."""
    from spark_mcp.server import build_server

    stopped = anyio.Event()
    server = build_server(config, on_stopped=stopped.set)
    server_scope = anyio.CancelScope()

    async with anyio.create_task_group() as group:

        async def serve() -> None:
            with server_scope:
                await server.run_stdio_async()  # returns when the host closes stdin
            group.cancel_scope.cancel()

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for signum in signals:
                    server_scope.cancel()  # the lifespan stops jobs, sessions and drivers
                    with anyio.move_on_after(config.driver.stop_timeout_s + 15):
                        await stopped.wait()
                    # The SDK reads stdin on a thread that cannot be cancelled: do not wait for it.
                    sys.stderr.flush()
                    os._exit(128 + signum)

        group.start_soon(stop_on_signal)
        group.start_soon(serve)


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    configure_logging(config.server.log_level)
    from spark_mcp.app import preflight
    from spark_mcp.identity import validate_principal_id

    preflight(config)  # a bad policy, profile or state database stops the server before it speaks
    if config.user:
        validate_principal_id(config.user)
    missing = config.missing_datasets()
    if missing:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(missing))
    if config.server.transport == "http":
        from spark_mcp.http.app import check_exposure
        from spark_mcp.http.serve import serve_http

        check_exposure(config)  # before anything starts: a clear refusal, not a half-started server
        anyio.run(serve_http, config)
        return 0
    anyio.run(_serve_stdio, config)
    return 0


# -- tokens ------------------------------------------------------------------------------


def cmd_tokens(args: argparse.Namespace) -> int:
    import time

    from spark_mcp.auth.settings import resource_url
    from spark_mcp.auth.tokens import parse_duration
    from spark_mcp.state.db import StateDB, state_path
    from spark_mcp.state.tokens import TokenStore

    config = _config(args)
    db = StateDB(state_path(config.home))
    try:
        store = TokenStore(db)
        now = time.time()
        if args.action == "create":
            lifetime = parse_duration(args.expires)
            scopes = args.scopes or [
                *config.auth.scopes,
                *([config.auth.write_scope] if config.auth.write_scope else []),
            ]
            issued = store.create(
                args.token_user,
                scopes=scopes,
                resource=args.resource or resource_url(config),
                expires_at=None if lifetime is None else now + lifetime,
                name=args.name,
            )
            record = issued.record
            print(issued.token)
            print(
                f"token {record.id} for {record.principal}: scopes {' '.join(record.scopes)}, "
                f"for {record.resource}, expires {_when(record.expires_at)}",
                file=sys.stderr,
            )
            print("This is the only time the token is shown: store it now.", file=sys.stderr)
            if config.auth.mode != "tokens":
                print(
                    f"Note: [auth] mode is {config.auth.mode}; API tokens work only with mode tokens.", file=sys.stderr
                )
            return 0
        if args.action == "revoke":
            record = store.revoke(args.token_id)
            print(f"token {record.id} of {record.principal} revoked; it is refused from the next request on")
            return 0
        records = store.list(args.token_user)
        if args.json:
            print(json.dumps([_token_row(r, now) for r in records], indent=2))
        elif not records:
            print("no tokens")
        else:
            for r in records:
                row = _token_row(r, now)
                print(
                    f"{row['id']}  user={row['user']}  {row['state']}  scopes={row['scopes']}  "
                    f"expires={row['expires']}  last used={row['last_used']}"
                    + (f"  name={row['name']}" if row["name"] else "")
                )
        return 0
    finally:
        db.close()


def _when(ts: float | None) -> str:
    import datetime

    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _token_row(record: Any, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "user": record.principal,
        "name": record.name,
        "scopes": " ".join(record.scopes),
        "resource": record.resource,
        "state": record.state(now),
        "created": _when(record.created_at),
        "expires": _when(record.expires_at),
        "last_used": _when(record.last_used_at) if record.last_used_at else "never",
    }


# -- doctor ------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from spark_mcp.doctor import run_checks

    try:
        config = _config(args)
    except SparkMcpError as exc:
        print(f"✘ configuration: {exc}")
        return 1
    ok = True
    for check in run_checks(config, dict(os.environ), start_driver=args.start_driver):
        mark = "✔" if check.ok else "✘"
        print(f"{mark} {check.name}: {check.detail}")
        if not check.ok:
            ok = False
            if check.fix:
                print(f"    fix: {check.fix}")
    print("all good" if ok else "some checks failed")
    return 0 if ok else 1


# -- drivers -----------------------------------------------------------------------------


def cmd_drivers(args: argparse.Namespace) -> int:
    from spark_mcp.drivers.recovery import is_ours, server_alive, stop_row
    from spark_mcp.state import StateDB
    from spark_mcp.state.db import state_path
    from spark_mcp.state.drivers import DriverStore

    config = _config(args)
    path = state_path(config.home)
    if not path.exists():
        store = None
        rows = []
    else:
        store = DriverStore(StateDB(path))
        rows = store.all()
    if args.action == "list":
        listed = [
            {
                "driver_id": r.id,
                "engine": r.engine,
                "backend": r.backend,
                "profile": r.profile,
                "owner": r.owner,
                "principal": r.principal,
                "lifetime": r.lifetime,
                "state": r.state,
                "pid": r.pid,
                "port": r.port,
                "memory_bytes": r.memory_bytes,
                "started_at": r.started_at,
                "last_used": r.last_used,
                "running": is_ours(r),
                "server_pid": r.server_pid,
                "server_alive": server_alive(r.server),
                "log": r.log,
            }
            for r in rows
        ]
        if args.json:
            print(json.dumps(listed, indent=2))
        elif not listed:
            print("no drivers")
        else:
            for item in listed:
                state = "running" if item["running"] else "not running"
                if item["server_alive"]:
                    server = f"owned by live server pid {item['server_pid']}"
                elif item["server_pid"] is None:
                    server = "no server (persistent: the next server re-adopts it)"
                else:
                    server = f"no live server (pid {item['server_pid']} is gone: the next server cleans it up)"
                print(
                    f"{item['driver_id']}  {item['owner'] or 'spare'}  profile={item['profile']}  "
                    f"pid={item['pid']}  port={item['port']}  {item['lifetime']}  {state}, {server}"
                )
        return 0
    targets = rows if args.all else [r for r in rows if r.id == args.driver_id]
    if not args.all and not targets:
        print(f"no driver {args.driver_id} under {config.home} (spark-mcp drivers list shows them)")
        return 1
    for target in targets:
        was_running = is_ours(target)
        stopped = anyio.run(partial(stop_row, target, timeout_s=config.driver.stop_timeout_s))
        if store is not None:
            store.delete(target.id)
        if was_running:
            print(f"{target.id}: {'stopped' if stopped else 'could not be stopped'}")
        else:
            print(f"{target.id}: was not running; its record was removed")
    return 0


# -- audit -------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from spark_mcp.audit import tail, verify

    given = getattr(args, "verify_path", None)
    if given and args.path and Path(given) != Path(args.path):
        print(f"two different audit files given: {args.path} and {given}", file=sys.stderr)
        return 2
    given = given or args.path
    path = Path(given) if given else _config(args).audit_path
    if args.action == "verify":
        report = verify(path)
        for problem in report.problems:
            print(f"✘ {problem}")
        print(
            f"{'✔' if report.ok else '✘'} {path}: {report.records} records, chain {'intact' if report.ok else 'BROKEN'}"
        )
        return 0 if report.ok else 1
    for record in tail(path, args.n, principal=args.filter_user):
        print(record.model_dump_json())
    return 0


# -- policy ------------------------------------------------------------------------------


def cmd_policy(args: argparse.Namespace) -> int:
    from spark_mcp.policy import load_policies

    config = _config(args)
    policy = load_policies(config.policies)
    if args.action == "check":
        print(f"✔ policies valid: {', '.join(str(p) for p in config.policies)}")
        for name in sorted(policy.roles):
            print(f"  role {name}")
        return 0
    return anyio.run(_explain_policy, config, args.explain_user, args.sql)


async def _explain_policy(config: Config, user: str, sql: str) -> int:
    from spark_mcp.app import App

    async with App.running(config) as app:
        principal = app.principal(user)
        session = await app.sessions.create(principal.id, profile="default", max_sessions=10**6)
        verdict = await app.executor.analyze(principal, session, sql)
        facts, decision = verdict.facts, verdict.decision
        print(f"user:      {principal.id} (roles: {', '.join(principal.roles) or 'none'})")
        print(f"statement: {facts.kind.value} ({facts.operation})")
        print(f"reads:     {', '.join(map(str, sorted(facts.reads))) or '-'}")
        print(f"writes:    {', '.join(map(str, sorted(facts.writes))) or '-'}")
        if facts.dangers:
            print("dangers:   " + "; ".join(f"{d.kind.value}: {d.detail}" for d in facts.dangers))
        if verdict.spark_error:
            print(f"spark:     {verdict.spark_error.error_class}: {verdict.spark_error.message}")
        print(f"decision:  {'ALLOWED' if decision.allowed else 'DENIED'}: {decision.reason}")
        print(f"rule:      {decision.rule}")
        return 0 if verdict.allowed else 2


# -- call --------------------------------------------------------------------------------


def cmd_call(args: argparse.Namespace) -> int:
    config = _config(args)
    configure_logging(config.server.log_level)
    try:
        arguments = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as exc:
        print(f"--args is not JSON: {exc}", file=sys.stderr)
        return 2
    return anyio.run(_call, config, args.tool, arguments)


async def _call(config: Config, tool: str, arguments: dict[str, Any]) -> int:
    from mcp import Client

    from spark_mcp.server import build_server

    async with Client(build_server(config)) as client:
        result = await client.call_tool(tool, arguments)
    for item in result.content:
        if getattr(item, "type", None) == "text":
            print(item.text)  # type: ignore[union-attr]
    if result.structured_content is not None:
        print(json.dumps(result.structured_content, indent=2))
    return 1 if result.is_error else 0


# -- parser ------------------------------------------------------------------------------


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
        print("name a driver id, or use --all", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except SparkMcpError as exc:
        print(f"spark-mcp: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
