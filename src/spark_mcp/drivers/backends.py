"""Which backend starts a profile's drivers: ``local`` or ``standalone`` (``driver.backend``, per profile).

The fleet sees one ``Backend``; ``Backends`` hands each start to the backend its profile
names and each stop to the backend that started the driver. A driver a previous server left
(re-adopted) whose backend this configuration no longer has is stopped by the local backend:
every backend here stops its drivers the same way, by their verified process group.
"""

from __future__ import annotations

from collections.abc import Mapping

from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.local import DriverSpec, LocalBackend, OnLaunch
from spark_mcp.drivers.standalone import StandaloneBackend
from spark_mcp.errors import DriverStartError


class Backends:
    name = "backends"

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.local = LocalBackend(config, environ)
        self._by_name: dict[str, LocalBackend] = {"local": self.local}
        if config.uses_standalone:
            self._by_name["standalone"] = StandaloneBackend(config, environ)

    async def start(self, spec: DriverSpec, *, on_launch: OnLaunch | None = None) -> Driver:
        backend = self._by_name.get(spec.profile.backend)
        if backend is None:  # config validation makes this unreachable
            raise DriverStartError(f"profile {spec.profile.name}: no backend {spec.profile.backend!r}")
        return await backend.start(spec, on_launch=on_launch)

    async def stop(self, driver: Driver) -> None:
        await self._by_name.get(driver.backend, self.local).stop(driver)
