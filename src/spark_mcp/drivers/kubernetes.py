"""The Kubernetes backend, pure part: the manifests of a driver, and how to read its pod.

spark-mcp creates each driver itself (the official ``kubernetes`` client), as four objects
in the tenant's namespace, all labelled with the driver id, principal and profile:

1. a ``Secret`` holding the driver's Spark Connect token, passed to the driver container as
   an environment variable (never in its arguments);
2. the driver ``Pod``: ``spark-submit --class SparkConnectServer --deploy-mode client`` from
   the image's Spark, with ``--master local[N]``, or ``k8s://https://kubernetes.default.svc``
   so that executors are pods too (then, and only then, it runs as a dedicated service
   account whose token is mounted; otherwise no service-account token is mounted at all).
   Non-root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, a
   read-only root filesystem with ``emptyDir`` scratch space for ``/tmp`` (HOME, working
   directory, ``spark.local.dir``, warehouse). Resources come from the profile: requests
   equal limits (cores; heap plus Spark's memory overhead). The tenant's credentials Secret,
   when configured, is mounted read-only into this pod and no other;
3. a headless ``Service`` naming the driver (executors call back on its RPC ports);
4. a ``NetworkPolicy``: the Connect port admits only the spark-mcp server's pods, the
   driver's RPC ports only the driver's own executors.

The pod is read by ``readiness()``: ready, still starting (and why), or failed (and why),
from its status alone. The lifecycle that creates, waits, connects and deletes is in
``kubernetes_backend``; this module does no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from spark_mcp.config import Config, KubernetesConfig
from spark_mcp.drivers.profiles import SPARK_DEFAULTS
from spark_mcp.drivers.stuck_tasks import task_reaper_settings

Manifest = dict[str, Any]

CONNECT_PORT = 15002
DRIVER_RPC_PORT = 7078
BLOCK_MANAGER_PORT = 7079
SCRATCH = "/tmp"
CREDENTIALS_MOUNT = "/var/run/secrets/spark-mcp/credentials"
TOKEN_KEY = "token"
LABEL_PREFIX = "spark-mcp.io"
MANAGED = {"app.kubernetes.io/managed-by": "spark-mcp"}
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")
_MEMORY = re.compile(r"^([1-9][0-9]*)([kmgt]?)$", re.IGNORECASE)
_MIB = {"": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


@dataclass(frozen=True)
class DriverRef:
    """Which driver: its id, owner, profile and where it lives."""

    driver_id: str  # drv-<hex>: a valid Kubernetes name
    principal: str
    profile: str
    namespace: str

    @property
    def token_secret(self) -> str:
        return f"{self.driver_id}-token"


def namespace_for(principal: str, settings: KubernetesConfig) -> str:
    """The tenant's driver namespace (``driver.kubernetes.namespace`` with ``{tenant}``)."""
    tenant = settings.tenants.get(principal, settings.default_tenant)
    return settings.namespace.replace("{tenant}", tenant)


def label_value(text: str) -> str:
    """``text`` as a label value (63 chars of [A-Za-z0-9._-]); altered values get a hash suffix."""
    cleaned = _LABEL_VALUE.sub("_", text).strip("._-")
    if cleaned == text and len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{cleaned[:52].strip('._-')}-{digest}".strip("-")


def labels(ref: DriverRef, role: str = "driver") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "spark-mcp-driver",
        **MANAGED,
        f"{LABEL_PREFIX}/driver-id": ref.driver_id,
        f"{LABEL_PREFIX}/principal": label_value(ref.principal),
        f"{LABEL_PREFIX}/profile": label_value(ref.profile),
        f"{LABEL_PREFIX}/role": role,
    }


def _metadata(ref: DriverRef, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": labels(ref),
        # The principal in full (a label value may have been shortened).
        "annotations": {f"{LABEL_PREFIX}/principal": ref.principal},
    }


def memory_mib(size: str) -> int:
    """``1g`` → 1024 (MiB), as Spark reads ``--driver-memory``."""
    match = _MEMORY.fullmatch(size)
    if not match:
        raise ValueError(f"{size!r} is not a memory size such as 512m or 2g")
    return max(1, int(int(match.group(1)) * _MIB[match.group(2).lower()]))


def container_memory_mib(heap: str) -> int:
    """Heap plus Spark's default memory overhead: max(384 MiB, 10 %)."""
    mib = memory_mib(heap)
    return mib + max(384, mib // 10)


def token_secret(ref: DriverRef, token: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(ref, ref.token_secret),
        "type": "Opaque",
        "immutable": True,
        "stringData": {TOKEN_KEY: token},
    }


def spark_conf(ref: DriverRef, settings: KubernetesConfig, config: Config) -> list[str]:
    """The driver's Spark settings: the local backend's walls, plus what a pod needs."""
    service_host = f"{ref.driver_id}.{ref.namespace}.svc"
    conf = [
        "spark.connect.grpc.binding.address=0.0.0.0",  # the pod's network; the NetworkPolicy decides who gets in
        f"spark.connect.grpc.binding.port={CONNECT_PORT}",
        "spark.ui.enabled=false",
        "spark.sql.variable.substitute=false",
        "spark.sql.runSQLOnFiles=false",
        "spark.sql.debug.maxToStringFields=100000",
        f"spark.local.dir={SCRATCH}/spark-local",
        f"spark.sql.warehouse.dir={SCRATCH}/warehouse",
        "spark.sql.catalogImplementation=in-memory",
        f"spark.driver.extraJavaOptions=-Djava.io.tmpdir={SCRATCH} -Dderby.system.home={SCRATCH}",
        f"spark.mcp.driver.id={ref.driver_id}",
        "spark.driver.bindAddress=0.0.0.0",
        f"spark.driver.host={service_host}",
        f"spark.driver.port={DRIVER_RPC_PORT}",
        f"spark.blockManager.port={BLOCK_MANAGER_PORT}",
        # Executor pods that will not stop a killed task are ended by Spark; see stuck_tasks.
        *(f"{key}={value}" for key, value in task_reaper_settings(config.driver.task_kill_timeout_s)),
    ]
    if settings.executor_instances:
        conf += [
            f"spark.kubernetes.namespace={ref.namespace}",
            f"spark.kubernetes.container.image={settings.image}",
            # Executors are owned by the driver pod: deleting it deletes them.
            f"spark.kubernetes.driver.pod.name={ref.driver_id}",
            f"spark.kubernetes.executor.podNamePrefix={ref.driver_id}",
            f"spark.kubernetes.authenticate.driver.serviceAccountName={settings.service_account}",
            f"spark.executor.instances={settings.executor_instances}",
            f"spark.executor.cores={settings.executor_cores}",
            f"spark.executor.memory={settings.executor_memory}",
            *(f"spark.kubernetes.executor.label.{k}={v}" for k, v in labels(ref, "executor").items()),
        ]
    conf += [f"{k}={v}" for k, v in sorted({**SPARK_DEFAULTS, **config.driver.spark_conf}.items())]
    return conf


def driver_pod(ref: DriverRef, settings: KubernetesConfig, config: Config) -> Manifest:
    """The driver pod (see the module docstring for every choice)."""
    cores, heap = config.driver.cores, config.driver.memory
    master = "k8s://https://kubernetes.default.svc" if settings.executor_instances else f"local[{cores}]"
    args = ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", master]
    args += ["--deploy-mode", "client", "--name", f"spark-mcp-{ref.driver_id}", "--driver-memory", heap]
    for item in spark_conf(ref, settings, config):
        args += ["--conf", item]
    args.append("spark-internal")
    memory = f"{container_memory_mib(heap)}Mi"
    executors_as_pods = settings.executor_instances > 0
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH}]
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"sizeLimit": settings.scratch_size}}]
    if settings.credentials_secret:
        mounts.append({"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True})
        volumes.append(
            {"name": "credentials", "secret": {"secretName": settings.credentials_secret, "defaultMode": 0o400}}
        )
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # a driver that dies is lost; spark-mcp starts a new one
        "automountServiceAccountToken": executors_as_pods,
        "enableServiceLinks": False,  # no other services' addresses in the environment
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "driver",
                "image": settings.image,
                "command": [f"{settings.spark_home}/bin/spark-submit"],
                "args": args,
                "workingDir": SCRATCH,
                "env": [
                    {
                        "name": "SPARK_CONNECT_AUTHENTICATE_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": ref.token_secret, "key": TOKEN_KEY}},
                    },
                    {"name": "HOME", "value": SCRATCH},
                    {"name": "SPARK_LOCAL_DIRS", "value": f"{SCRATCH}/spark-local"},
                ],
                "ports": [
                    {"name": "connect", "containerPort": CONNECT_PORT, "protocol": "TCP"},
                    {"name": "driver-rpc", "containerPort": DRIVER_RPC_PORT, "protocol": "TCP"},
                    {"name": "blockmanager", "containerPort": BLOCK_MANAGER_PORT, "protocol": "TCP"},
                ],
                "readinessProbe": {
                    "tcpSocket": {"port": CONNECT_PORT},
                    "periodSeconds": 2,
                    "failureThreshold": 3,
                },
                "resources": {
                    "requests": {"cpu": str(cores), "memory": memory},
                    "limits": {"cpu": str(cores), "memory": memory},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if executors_as_pods:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(ref, ref.driver_id), "spec": spec}


def driver_service(ref: DriverRef) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ref, ref.driver_id),
        "spec": {
            "clusterIP": "None",  # headless: the name resolves to the pod itself
            "selector": {f"{LABEL_PREFIX}/driver-id": ref.driver_id, f"{LABEL_PREFIX}/role": "driver"},
            "ports": [
                {"name": "connect", "port": CONNECT_PORT, "targetPort": CONNECT_PORT, "protocol": "TCP"},
                {"name": "driver-rpc", "port": DRIVER_RPC_PORT, "targetPort": DRIVER_RPC_PORT, "protocol": "TCP"},
                {"name": "blockmanager", "port": BLOCK_MANAGER_PORT, "targetPort": BLOCK_MANAGER_PORT},
            ],
        },
    }


def network_policy(ref: DriverRef, settings: KubernetesConfig) -> Manifest:
    executors = {f"{LABEL_PREFIX}/driver-id": ref.driver_id, f"{LABEL_PREFIX}/role": "executor"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(ref, ref.driver_id),
        "spec": {
            "podSelector": {
                "matchLabels": {f"{LABEL_PREFIX}/driver-id": ref.driver_id, f"{LABEL_PREFIX}/role": "driver"}
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": settings.server_namespace}
                            },
                            "podSelector": {"matchLabels": dict(settings.server_labels)},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": CONNECT_PORT}],
                },
                {
                    "from": [{"podSelector": {"matchLabels": executors}}],
                    "ports": [
                        {"protocol": "TCP", "port": DRIVER_RPC_PORT},
                        {"protocol": "TCP", "port": BLOCK_MANAGER_PORT},
                    ],
                },
            ],
        },
    }


def driver_manifests(ref: DriverRef, token: str, config: Config) -> list[Manifest]:
    """Everything one driver needs, in creation order (the Secret before the pod that reads it)."""
    settings = config.driver.kubernetes
    return [
        token_secret(ref, token),
        network_policy(ref, settings),  # before the pod: it is never reachable without it
        driver_service(ref),
        driver_pod(ref, settings, config),
    ]


# --------------------------------------------------------------------------------------------
# Reading a pod.
# --------------------------------------------------------------------------------------------


class PodState(StrEnum):
    READY = "ready"
    STARTING = "starting"
    FAILED = "failed"


@dataclass(frozen=True)
class Readiness:
    state: PodState
    reason: str


# Waiting reasons that will not resolve by themselves while spark-mcp waits.
_FATAL_WAITING = frozenset(
    {"ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError", "ErrImageNeverPull"}
)


def readiness(pod: Mapping[str, Any]) -> Readiness:
    """Ready, starting or failed, with the reason an operator needs, from the pod's status."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return Readiness(PodState.FAILED, "the driver pod is being deleted")
    phase = status.get("phase", "Pending")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated")
        if terminated:
            reason = terminated.get("reason") or "Terminated"
            code = terminated.get("exitCode")
            detail = (terminated.get("message") or "").strip()[:300]
            return Readiness(
                PodState.FAILED, f"the driver container ended ({reason}, exit code {code}) {detail}".strip()
            )
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") in _FATAL_WAITING:
            message = (waiting.get("message") or "").strip()[:300]
            return Readiness(PodState.FAILED, f"{waiting['reason']}: {message}".rstrip(": "))
    if phase in ("Failed", "Succeeded"):
        return Readiness(PodState.FAILED, f"the driver pod {phase.lower()}: {status.get('reason') or ''}".rstrip(": "))
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {})
    if phase == "Running" and ready.get("status") == "True":
        return Readiness(PodState.READY, "the Connect port accepts connections")
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False":
        reason = scheduled.get("reason") or "not scheduled"
        return Readiness(PodState.STARTING, f"{reason}: {(scheduled.get('message') or '').strip()[:300]}".rstrip(": "))
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return Readiness(PodState.STARTING, f"{waiting.get('reason', 'waiting')}")
    return Readiness(PodState.STARTING, f"the driver pod is {phase.lower()}")
