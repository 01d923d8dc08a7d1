"""Driver quotas and the reapers, as pure decisions: each refusal names its quota and what frees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.owners import holder_of, owner_key
from spark_mcp.drivers.quotas import Admission, FleetUsage, QuotaLimits, admit
from spark_mcp.drivers.reaper import plan_reaping
from spark_mcp.errors import QuotaExceeded

MIB = 1024**2
LIMITS = QuotaLimits(max_drivers=3, max_drivers_per_user=2, max_driver_memory=3000 * MIB, driver_idle_timeout_s=600)


def usage(
    drivers: int = 0, memory: int = 0, owner_drivers: int = 0, owner_unused: int = 0, spares: tuple[int, ...] = ()
) -> FleetUsage:
    return FleetUsage(drivers, memory * MIB, owner_drivers, owner_unused, [s * MIB for s in spares])


ADMITTED = [
    # (usage, needed MiB, available MiB, expected admission, why)
    (usage(), 900, None, Admission(), "an empty fleet"),
    (usage(2, 1800, owner_drivers=1), 900, 8000, Admission(), "room everywhere"),
    (usage(2, 1800, owner_drivers=2, owner_unused=1), 900, None, Admission(stop_own_unused=True), "own unused"),
    (usage(3, 2700, spares=(900,)), 900, None, Admission(stop_spares=1), "a spare gives way to max_drivers"),
    (usage(2, 2700, spares=(900, 900)), 900, None, Admission(stop_spares=1), "a spare gives way to memory"),
    (usage(2, 1800, spares=(900,)), 900, 100, Admission(stop_spares=1), "a spare gives memory back to the machine"),
]


@pytest.mark.parametrize(("current", "needed", "available", "expected", "why"), ADMITTED, ids=[a[-1] for a in ADMITTED])
def test_admitted(current: FleetUsage, needed: int, available: int | None, expected: Admission, why: str) -> None:
    got = admit(
        LIMITS, current, memory=needed * MIB, available=None if available is None else available * MIB, owner="user bob"
    )
    assert got == expected


REFUSED = [
    (usage(2, 1800, owner_drivers=2), 900, None, "quotas.max_drivers_per_user", "close_session"),
    (usage(3, 2700), 900, None, "quotas.max_drivers", "spark-mcp drivers stop"),
    (usage(3, 2700, spares=(900,), owner_drivers=2), 900, None, "quotas.max_drivers_per_user", "close_session"),
    (usage(2, 2500), 900, None, "quotas.max_driver_memory", "less memory"),
    (usage(1, 900), 900, 500, "machine memory", "less memory"),
]


@pytest.mark.parametrize(("current", "needed", "available", "quota", "remedy"), REFUSED, ids=[r[3] for r in REFUSED])
def test_refused_with_the_quota_named_and_what_frees_it(
    current: FleetUsage, needed: int, available: int | None, quota: str, remedy: str
) -> None:
    with pytest.raises(QuotaExceeded) as refusal:
        admit(
            LIMITS,
            current,
            memory=needed * MIB,
            available=None if available is None else available * MIB,
            owner="user bob",
        )
    assert refusal.value.quota == quota
    assert str(refusal.value).startswith(quota) and remedy in str(refusal.value)
    assert refusal.value.code == "quota_exceeded"


def test_the_idle_timeout_is_named_as_what_frees_a_driver() -> None:
    with pytest.raises(QuotaExceeded, match=r"quotas.driver_idle_timeout_s \(600 s\)"):
        admit(LIMITS, usage(3, 2700), memory=900 * MIB, available=None, owner="user bob")


def driver(
    name: str,
    *,
    owner: str | None = "user:a",
    started: float = 0,
    used: float = 0,
    state: DriverState = DriverState.READY,
) -> Driver:
    return Driver(
        id=name,
        profile="default",
        backend="local",
        host="localhost",
        port=1,
        workdir=Path("/w"),
        log_path=Path("/w/log"),
        token="t",
        owner=owner,
        state=state,
        started_at=started,
        last_used=used,
    )


def reaped(
    drivers: list[Driver], *, now: float, idle: float = 600, lifetime: float = 0, busy: frozenset[str] = frozenset()
) -> dict[str, str]:
    plan = plan_reaping(drivers, now=now, idle_timeout_s=idle, max_lifetime_s=lifetime, busy=lambda d: d.id in busy)
    return {item.driver.id: item.reason for item in plan}


def test_the_idle_reaper_stops_idle_assigned_drivers_and_nothing_else() -> None:
    drivers = [
        driver("idle", used=0),
        driver("recent", used=900),
        driver("busy", used=0),
        driver("spare", owner=None, used=0),
        driver("starting", used=0, state=DriverState.STARTING),
    ]
    got = reaped(drivers, now=1000, busy=frozenset({"busy"}))
    assert list(got) == ["idle"]
    assert "quotas.driver_idle_timeout_s (600 s)" in got["idle"]


def test_the_lifetime_reaper_stops_old_drivers_spares_included_but_not_busy_ones() -> None:
    drivers = [
        driver("old", started=0, used=999),
        driver("old-spare", owner=None),
        driver("old-busy"),
        driver("young", started=500, used=999),
    ]
    got = reaped(drivers, now=1000, idle=0, lifetime=900, busy=frozenset({"old-busy"}))
    assert sorted(got) == ["old", "old-spare"]
    assert all("quotas.driver_max_lifetime_s (900 s)" in reason for reason in got.values())


def test_zero_turns_a_reaper_off() -> None:
    assert reaped([driver("ancient", started=0, used=0)], now=10**9, idle=0, lifetime=0) == {}


OWNERS = [
    # (share, principal, session, group) -> (owner, holder)
    ("user", "ann", "ses_1", None, "user:ann", "user:ann"),
    ("session", "ann", "ses_1", None, "session:ses_1", "user:ann"),
    ("group", "ann", "ses_1", "analyst", "group:analyst", "group:analyst"),
]


@pytest.mark.parametrize(("share", "principal", "session", "group", "owner", "holder"), OWNERS)
def test_who_a_driver_serves_and_whom_it_counts_against(
    share: str, principal: str, session: str, group: str | None, owner: str, holder: str
) -> None:
    assert owner_key(share, principal=principal, session_id=session, group=group) == owner
    assert holder_of(owner, None if share == "group" else principal) == holder


def test_two_principals_never_share_an_owner_unless_grouped() -> None:
    for share in ("user", "session"):
        ann = owner_key(share, principal="ann", session_id="ses_1", group="analyst")
        bob = owner_key(share, principal="bob", session_id="ses_2", group="analyst")
        assert ann != bob
    assert owner_key("group", principal="ann", session_id="ses_1", group="analyst") == owner_key(
        "group", principal="bob", session_id="ses_2", group="analyst"
    )
