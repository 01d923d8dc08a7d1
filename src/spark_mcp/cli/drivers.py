"""``spark-mcp drivers``: see and stop the drivers of this home, and which server owns each."""

from __future__ import annotations

import argparse
import json
from functools import partial

import anyio

from spark_mcp.cli.common import config_from
from spark_mcp.cli.output import out


def cmd_drivers(args: argparse.Namespace) -> int:
    from spark_mcp.drivers.recovery import is_ours, server_alive, stop_row
    from spark_mcp.state import StateDB
    from spark_mcp.state.db import state_path
    from spark_mcp.state.drivers import DriverStore

    config = config_from(args)
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
            out(json.dumps(listed, indent=2))
        elif not listed:
            out("no drivers")
        else:
            for item in listed:
                state = "running" if item["running"] else "not running"
                if item["server_alive"]:
                    server = f"owned by live server pid {item['server_pid']}"
                elif item["server_pid"] is None:
                    server = "no server (persistent: the next server re-adopts it)"
                else:
                    server = f"no live server (pid {item['server_pid']} is gone: the next server cleans it up)"
                out(
                    f"{item['driver_id']}  {item['owner'] or 'spare'}  profile={item['profile']}  "
                    f"pid={item['pid']}  port={item['port']}  {item['lifetime']}  {state}, {server}"
                )
        return 0
    targets = rows if args.all else [r for r in rows if r.id == args.driver_id]
    if not args.all and not targets:
        out(f"no driver {args.driver_id} under {config.home} (spark-mcp drivers list shows them)")
        return 1
    for target in targets:
        was_running = is_ours(target)
        stopped = anyio.run(partial(stop_row, target, timeout_s=config.driver.stop_timeout_s))
        if store is not None:
            store.delete(target.id)
        if was_running:
            out(f"{target.id}: {'stopped' if stopped else 'could not be stopped'}")
        else:
            out(f"{target.id}: was not running; its record was removed")
    return 0
