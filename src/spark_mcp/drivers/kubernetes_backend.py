"""The Kubernetes backend's lifecycle: create a driver's objects, wait for its pod, connect, delete.

``KubernetesBackend`` follows the fleet's ``Backend`` protocol (``start(spec) -> Driver``,
``stop(driver)``) and talks to the cluster only through ``KubeApi``, five calls wide.
``OfficialKubeApi`` implements it with the official ``kubernetes`` client (an optional
dependency: ``spark-mcp[kubernetes]``).

Start: create the manifests of ``kubernetes.driver_manifests`` in order; poll the pod and
read it with ``readiness()`` until it is ready, has failed, or ``driver.startup_timeout_s``
has passed; then open a tunnel to its Connect port. Whatever fails, every object already
created is deleted before the error is raised, and the error says why (the pod's own
reason, e.g. ``Unschedulable: 0/3 nodes are available: 3 Insufficient cpu``, and the tail of
its log).

The client reaches the driver through the API server's port-forward, on a local port: the
PySpark client sends its token in clear only to ``localhost``, and this way the token never
crosses the pod network unencrypted (API server and kubelet connections are TLS).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver, DriverState, new_driver_token
from spark_mcp.drivers.files import drivers_dir, ensure_private_dir
from spark_mcp.drivers.kubernetes import CONNECT_PORT, DriverRef, Manifest, PodState, driver_manifests, namespace_for
from spark_mcp.drivers.kubernetes import readiness as read_pod
from spark_mcp.drivers.local import DriverSpec, OnLaunch
from spark_mcp.errors import DriverStartError

log = structlog.get_logger(__name__)


class Tunnel(Protocol):
    port: int  # on 127.0.0.1

    def close(self) -> None: ...


class KubeApi(Protocol):
    def create(self, manifest: Manifest) -> None: ...

    def read_pod(self, namespace: str, name: str) -> Mapping[str, Any]: ...

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete one object; an object that is already gone is not an error."""
        ...

    def pod_log(self, namespace: str, name: str, tail_lines: int) -> str: ...

    def open_tunnel(self, namespace: str, pod: str, port: int) -> Tunnel: ...


class KubernetesBackend:
    """Starts drivers as pods in their tenant's namespace, and deletes them."""

    name = "kubernetes"

    def __init__(self, config: Config, api: Callable[[], KubeApi] | None = None, *, poll_s: float = 1.0) -> None:
        self._config = config
        self._make_api = api or (lambda: OfficialKubeApi(config.driver.kubernetes.kubeconfig))
        self._api: KubeApi | None = None
        self._poll_s = poll_s
        self._live: dict[str, tuple[DriverRef, Tunnel | None]] = {}

    def _client(self) -> KubeApi:
        if self._api is None:
            try:
                self._api = self._make_api()
            except Exception as exc:
                raise DriverStartError(
                    f"cannot reach the Kubernetes API ({type(exc).__name__}: {exc}); check "
                    "driver.kubernetes.kubeconfig, or run spark-mcp in the cluster with its service account"
                ) from None
        return self._api

    async def start(self, spec: DriverSpec | str, *, on_launch: OnLaunch | None = None) -> Driver:
        """A ready driver pod for ``spec.principal`` (a bare principal name: the default profile).

        A pod lives in its principal's tenant namespace, so there are no spares and no group
        drivers here (config refuses ``pool.size`` and ``driver.share = group`` with this backend).
        ``on_launch`` is not called: nothing runs on this machine until the pod is ready.
        """
        principal, profile = (spec, "default") if isinstance(spec, str) else (spec.principal, spec.profile.name)
        memory = 0 if isinstance(spec, str) else spec.profile.memory_bytes
        if principal is None:
            raise DriverStartError(
                "the kubernetes backend starts a driver for one principal (its tenant's namespace): "
                "set pool.size = 0 and driver.share = user or session"
            )
        api = self._client()
        driver_id = f"drv-{secrets.token_hex(5)}"
        ref = DriverRef(driver_id, principal, profile, namespace_for(principal, self._config.driver.kubernetes))
        token = new_driver_token()
        workdir = ensure_private_dir(drivers_dir(self._config.home) / driver_id)
        created: list[Manifest] = []
        log.info(
            "driver.starting", driver_id=driver_id, principal=principal, namespace=ref.namespace, backend=self.name
        )
        try:
            for manifest in driver_manifests(ref, token, self._config):
                await anyio.to_thread.run_sync(api.create, manifest)
                created.append(manifest)
            await self._wait_ready(api, ref)
            tunnel = await anyio.to_thread.run_sync(api.open_tunnel, ref.namespace, driver_id, CONNECT_PORT)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete(api, ref, created)
            raise
        self._live[driver_id] = (ref, tunnel)
        driver = Driver(
            id=driver_id,
            profile=profile,
            principal=principal,
            backend=self.name,
            host="localhost",  # the tunnel's end; see the module docstring
            port=tunnel.port,
            workdir=workdir,
            log_path=workdir / "driver.log",
            token=token,
            memory_bytes=memory,
            state=DriverState.READY,
            ready_at=time.time(),
        )
        log.info("driver.ready", driver_id=driver_id, seconds=round((driver.ready_at or 0.0) - driver.started_at, 1))
        return driver

    async def _wait_ready(self, api: KubeApi, ref: DriverRef) -> None:
        timeout = self._config.driver.startup_timeout_s
        deadline = time.monotonic() + timeout
        last = "the driver pod was not created"
        while True:
            pod = await anyio.to_thread.run_sync(api.read_pod, ref.namespace, ref.driver_id)
            verdict = read_pod(pod)
            if verdict.state is PodState.READY:
                return
            last = verdict.reason
            if verdict.state is PodState.FAILED:
                raise DriverStartError(f"the driver pod failed: {last}.{await self._log_tail(api, ref)}")
            if time.monotonic() > deadline:
                raise DriverStartError(
                    f"the driver pod was not ready within {timeout:g} s ({last}); raise driver.startup_timeout_s, "
                    f"or free resources in namespace {ref.namespace}.{await self._log_tail(api, ref)}"
                )
            await anyio.sleep(self._poll_s)

    async def _log_tail(self, api: KubeApi, ref: DriverRef) -> str:
        try:
            text = await anyio.to_thread.run_sync(api.pod_log, ref.namespace, ref.driver_id, 12)
        except Exception:
            return ""  # no container has run yet: nothing to show
        lines = [f"  {line[:300]}" for line in text.splitlines() if line.strip()]
        return "\nFrom its log:\n" + "\n".join(lines) if lines else ""

    async def _delete(self, api: KubeApi, ref: DriverRef, created: list[Manifest]) -> None:
        # The pod first (nothing then uses its Secret), and the rest in reverse order of creation.
        for manifest in sorted(reversed(created), key=lambda m: m["kind"] != "Pod"):
            try:
                await anyio.to_thread.run_sync(
                    api.delete, manifest["kind"], ref.namespace, manifest["metadata"]["name"]
                )
            except Exception as exc:  # keep deleting the rest; the label selector finds leftovers
                log.error("driver.delete_failed", driver_id=ref.driver_id, kind=manifest["kind"], error=str(exc))

    async def stop(self, driver: Driver) -> None:
        ref, tunnel = self._live.pop(driver.id, (None, None))
        driver.state = DriverState.STOPPING
        if tunnel is not None:
            tunnel.close()
        if ref is not None:
            everything = driver_manifests(ref, "", self._config)
            with anyio.CancelScope(shield=True):
                await self._delete(self._client(), ref, everything)
        driver.state = DriverState.STOPPED
        log.info("driver.stopped", driver_id=driver.id, backend=self.name)


class PortForwardTunnel:
    """127.0.0.1:<port> → the pod's port, one API-server port-forward stream per connection."""

    def __init__(self, open_stream: Callable[[], Any], remote_port: int) -> None:
        self._open_stream = open_stream
        self._remote_port = remote_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"tunnel-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                local, _ = self._listener.accept()
            except OSError:
                return
            remote = self._open_stream().socket(self._remote_port)
            for source, target in ((local, remote), (remote, local)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


def _pump(source: Any, target: Any) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.close()


class OfficialKubeApi:
    """``KubeApi`` over the official client. Not run here: there is no API server (see README)."""

    def __init__(self, kubeconfig: str | None) -> None:
        from kubernetes import client
        from kubernetes import config as kube_config

        if kubeconfig:
            kube_config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        else:
            kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        self._client = client.ApiClient()
        self._core = client.CoreV1Api(self._client)
        self._net = client.NetworkingV1Api(self._client)

    def create(self, manifest: Manifest) -> None:
        namespace = manifest["metadata"]["namespace"]
        create: Any = {
            "Secret": self._core.create_namespaced_secret,
            "Pod": self._core.create_namespaced_pod,
            "Service": self._core.create_namespaced_service,
            "NetworkPolicy": self._net.create_namespaced_network_policy,
        }[manifest["kind"]]
        create(namespace, manifest)

    def read_pod(self, namespace: str, name: str) -> Mapping[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self._core.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise
        return dict(self._client.sanitize_for_serialization(pod))  # type: ignore[no-untyped-call]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        delete: Any = {
            "Secret": self._core.delete_namespaced_secret,
            "Pod": self._core.delete_namespaced_pod,
            "Service": self._core.delete_namespaced_service,
            "NetworkPolicy": self._net.delete_namespaced_network_policy,
        }[kind]
        try:
            delete(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def pod_log(self, namespace: str, name: str, tail_lines: int) -> str:
        return str(self._core.read_namespaced_pod_log(name, namespace, tail_lines=tail_lines))

    def open_tunnel(self, namespace: str, pod: str, port: int) -> Tunnel:
        from kubernetes.stream import portforward

        def open_stream() -> Any:
            return portforward(self._core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))

        return PortForwardTunnel(open_stream, port)
