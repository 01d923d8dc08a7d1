"""Who a driver serves, by share level (``driver.share``), and whom it counts against.

- ``user`` (default): ``user:<principal>``, so a principal's sessions multiplex on its driver;
- ``session``: ``session:<session id>``, a driver per session, stopped when the session ends;
- ``group``: ``group:<role>``, one driver per role and profile for all members of the role.

``quotas.max_drivers_per_user`` counts a driver against its principal (under ``user`` and
``session``) or its role (under ``group``): the *holder*.
"""

from __future__ import annotations

from spark_mcp.drivers.base import Driver


def owner_key(share: str, *, principal: str, session_id: str, group: str | None) -> str:
    """Who a driver serves under share level ``share``."""
    if share == "session":
        return f"session:{session_id}"
    if share == "group":
        if group is None:
            raise ValueError("the group share level needs the role the driver is shared by")
        return f"group:{group}"
    return f"user:{principal}"


def holder_of(owner: str, principal: str | None) -> str:
    """Who a driver counts against for ``quotas.max_drivers_per_user``: its group, else its principal.

    Under the ``session`` share level each session owns its driver, but the quota is the user's.
    """
    if owner.startswith("group:") or principal is None:
        return owner
    return f"user:{principal}"


def quota_holder(driver: Driver) -> str:
    assert driver.owner is not None
    return holder_of(driver.owner, driver.principal)


def holder_words(holder: str | None) -> str:
    if holder is None:
        return "the warm pool"
    kind, _, name = holder.partition(":")
    return {"user": f"user {name}", "group": f"role {name}"}.get(kind, holder)
