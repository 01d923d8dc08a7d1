"""``spark-mcp tokens``: create, list and revoke API tokens for the HTTP transport."""

from __future__ import annotations

import argparse
import json
from typing import Any

from spark_mcp.cli.common import config_from
from spark_mcp.cli.output import err, out


def cmd_tokens(args: argparse.Namespace) -> int:
    import time

    from spark_mcp.auth.settings import resource_url
    from spark_mcp.auth.tokens import parse_duration
    from spark_mcp.state.db import StateDB, state_path
    from spark_mcp.state.tokens import TokenStore

    config = config_from(args)
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
            out(issued.token)
            err(
                f"token {record.id} for {record.principal}: scopes {' '.join(record.scopes)}, "
                f"for {record.resource}, expires {_when(record.expires_at)}"
            )
            err("This is the only time the token is shown: store it now.")
            if config.auth.mode != "tokens":
                err(f"Note: [auth] mode is {config.auth.mode}; API tokens work only with mode tokens.")
            return 0
        if args.action == "revoke":
            record = store.revoke(args.token_id)
            out(f"token {record.id} of {record.principal} revoked; it is refused from the next request on")
            return 0
        records = store.list(args.token_user)
        if args.json:
            out(json.dumps([_token_row(r, now) for r in records], indent=2))
        elif not records:
            out("no tokens")
        else:
            for r in records:
                row = _token_row(r, now)
                out(
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
