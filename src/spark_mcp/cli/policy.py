"""``spark-mcp policy``: check the policy files, or explain one decision."""

from __future__ import annotations

import argparse

import anyio

from spark_mcp.cli.common import config_from
from spark_mcp.cli.output import out
from spark_mcp.config import Config


def cmd_policy(args: argparse.Namespace) -> int:
    from spark_mcp.policy import load_policies

    config = config_from(args)
    policy = load_policies(config.policies)
    if args.action == "check":
        out(f"✔ policies valid: {', '.join(str(p) for p in config.policies)}")
        for name in sorted(policy.roles):
            out(f"  role {name}")
        return 0
    return anyio.run(_explain_policy, config, args.explain_user, args.sql)


async def _explain_policy(config: Config, user: str, sql: str) -> int:
    from spark_mcp.app import App

    async with App.running(config) as app:
        principal = app.principal(user)
        session = await app.sessions.create(principal.id, profile="default", max_sessions=10**6)
        verdict = await app.executor.analyze(principal, session, sql)
        facts, decision = verdict.facts, verdict.decision
        out(f"user:      {principal.id} (roles: {', '.join(principal.roles) or 'none'})")
        out(f"statement: {facts.kind.value} ({facts.operation})")
        out(f"reads:     {', '.join(map(str, sorted(facts.reads))) or '-'}")
        out(f"writes:    {', '.join(map(str, sorted(facts.writes))) or '-'}")
        if facts.dangers:
            out("dangers:   " + "; ".join(f"{d.kind.value}: {d.detail}" for d in facts.dangers))
        if verdict.spark_error:
            out(f"spark:     {verdict.spark_error.error_class}: {verdict.spark_error.message}")
        out(f"decision:  {'ALLOWED' if decision.allowed else 'DENIED'}: {decision.reason}")
        out(f"rule:      {decision.rule}")
        return 0 if verdict.allowed else 2
