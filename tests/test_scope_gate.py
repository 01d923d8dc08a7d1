"""The scope gate: statements that change name resolution run alone in their session (pure)."""

from __future__ import annotations

from spark_mcp.scope_gate import Lease, ScopeGate, changes_scope
from spark_mcp.statement import StatementFacts, StatementKind


def facts(operation: str, kind: StatementKind = StatementKind.METADATA) -> StatementFacts:
    return StatementFacts(kind=kind, operation=operation)


def test_readers_share_the_gate_and_an_exclusive_statement_waits_for_all_of_them() -> None:
    gate = ScopeGate()
    assert gate.try_shared() and gate.try_shared()
    assert not gate.try_exclusive()
    gate.release_shared()
    assert not gate.try_exclusive()
    gate.release_shared()
    assert gate.try_exclusive()
    assert not gate.try_shared() and not gate.try_exclusive()
    gate.release_exclusive()
    assert gate.try_shared()


def test_a_waiting_exclusive_statement_holds_back_new_readers_so_it_is_not_starved() -> None:
    gate = ScopeGate()
    assert gate.try_shared()
    gate.want_exclusive(True)
    assert not gate.try_shared()  # a reader arriving after it waits behind it
    gate.release_shared()
    assert gate.try_exclusive()
    gate.want_exclusive(False)
    gate.release_exclusive()
    assert gate.try_shared()


def test_a_lease_releases_once_whoever_calls_it() -> None:
    gate = ScopeGate()
    assert gate.try_shared()
    lease = Lease(gate.release_shared)
    lease.release()
    lease.release()  # the job's end and an error path may both call it
    assert gate.try_exclusive()


def test_use_and_set_change_scope_and_queries_and_views_do_not() -> None:
    assert changes_scope(facts("SetCatalogAndNamespace"))
    assert changes_scope(facts("SetCatalogCommand"))
    assert changes_scope(facts("SetCommand", StatementKind.ADMIN))
    assert not changes_scope(facts("Project", StatementKind.QUERY))
    assert not changes_scope(facts("CreateViewCommand", StatementKind.TEMP_VIEW))
