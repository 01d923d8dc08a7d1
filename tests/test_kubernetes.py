"""The Kubernetes backend without a cluster: manifests checked against the Kubernetes API's
own models, the deploy manifests, the pod reader, and the lifecycle's order and cleanup.

There is no API server on this machine. Schema checks use the official ``kubernetes``
package's models (generated from the Kubernetes OpenAPI spec): a manifest is deserialised
into its model (required fields, types and enums are validated) and serialised back, and
must come back unchanged, so a misspelt or misplaced key (which the models would drop) fails.
The pod statuses below have the shapes the API returns (each is validated as a ``V1Pod`` too);
they are written from the API reference, not recorded from a cluster. What was not run is
listed in the README.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kubernetes.client import ApiClient

from spark_mcp.config import Config, load_config
from spark_mcp.drivers.kubernetes import (
    CONNECT_PORT,
    CREDENTIALS_MOUNT,
    DriverRef,
    PodState,
    container_memory_mib,
    driver_manifests,
    label_value,
    namespace_for,
    readiness,
)
from spark_mcp.drivers.kubernetes_backend import KubernetesBackend
from spark_mcp.errors import DriverStartError

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
MODELS = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
    "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment",
    "PersistentVolumeClaim": "V1PersistentVolumeClaim",
    "Service": "V1Service",
    "Secret": "V1Secret",
    "Pod": "V1Pod",
    "NetworkPolicy": "V1NetworkPolicy",
}
TOKEN = "tok-3f9a-never-in-args"
_api = ApiClient()


def round_trip(manifest: Mapping[str, Any]) -> Any:
    """The manifest through its Kubernetes model and back (raises when it is not valid)."""
    model = _api.deserialize(json.dumps(manifest), MODELS[manifest["kind"]], "application/json")
    return _api.sanitize_for_serialization(model)


def normalised(value: Any) -> Any:
    """JSON as the API would hold it (int-or-string ports and quantities compared as text)."""
    return json.loads(json.dumps(value))


def config(tmp_path: Path, **kubernetes: Any) -> Config:
    return load_config(
        None,
        environ={},
        overrides={
            "home": str(tmp_path),
            "driver": {"backend": "kubernetes", "cores": 2, "memory": "2g", "kubernetes": kubernetes},
        },
    )


def manifests(tmp_path: Path, **kubernetes: Any) -> dict[str, dict[str, Any]]:
    ref = DriverRef("drv-0a1b2c3d4e", "alice@example.com", "analytics", "spark-mcp-default")
    return {m["kind"]: m for m in driver_manifests(ref, TOKEN, config(tmp_path, **kubernetes))}


VARIANTS = [
    pytest.param({}, id="local[N] in the pod"),
    pytest.param({"executor_instances": 3, "executor_memory": "4g"}, id="executors as pods"),
    pytest.param({"credentials_secret": "tenant-creds", "image_pull_secrets": ["regcred"]}, id="with credentials"),
]


@pytest.mark.parametrize("settings", VARIANTS)
def test_driver_manifests_are_valid_kubernetes_objects(tmp_path: Path, settings: dict[str, Any]) -> None:
    for manifest in manifests(tmp_path, **settings).values():
        assert round_trip(manifest) == normalised(manifest), manifest["kind"]


def test_the_secret_comes_before_the_pod_that_reads_it(tmp_path: Path) -> None:
    ref = DriverRef("drv-1", "alice", "default", "ns")
    kinds = [m["kind"] for m in driver_manifests(ref, TOKEN, config(tmp_path))]
    assert kinds.index("Secret") < kinds.index("Pod") and kinds.index("NetworkPolicy") < kinds.index("Pod")


def test_every_object_names_its_driver_principal_and_profile(tmp_path: Path) -> None:
    for manifest in manifests(tmp_path).values():
        meta = manifest["metadata"]
        assert meta["namespace"] == "spark-mcp-default"
        assert meta["labels"]["spark-mcp.io/driver-id"] == "drv-0a1b2c3d4e"
        assert meta["labels"]["spark-mcp.io/profile"] == "analytics"
        assert meta["labels"]["spark-mcp.io/principal"] == label_value("alice@example.com")
        assert meta["annotations"]["spark-mcp.io/principal"] == "alice@example.com"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "spark-mcp"


@pytest.mark.parametrize("text", ["alice", "alice@example.com", "a" * 64, "-x-", "ünïcode"])
def test_label_values_are_valid_and_distinct(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert value == "" or (value[0].isalnum() and value[-1].isalnum())
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in value)
    if text != value:
        assert value != label_value(text + "x")  # a hash keeps shortened values apart


def test_resources_come_from_the_profile(tmp_path: Path) -> None:
    container = manifests(tmp_path)["Pod"]["spec"]["containers"][0]
    memory = f"{container_memory_mib('2g')}Mi"
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": memory},
        "limits": {"cpu": "2", "memory": memory},
    }
    assert container_memory_mib("2g") == 2048 + 384 and container_memory_mib("10g") == 10240 + 1024
    assert container["args"][container["args"].index("--driver-memory") + 1] == "2g"
    assert container["args"][container["args"].index("--master") + 1] == "local[2]"


def test_the_pod_runs_locked_down(tmp_path: Path) -> None:
    spec = manifests(tmp_path)["Pod"]["spec"]
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert spec["restartPolicy"] == "Never" and spec["enableServiceLinks"] is False
    # A read-only root filesystem: everything Spark writes goes to the scratch emptyDir.
    assert {"name": "scratch", "mountPath": "/tmp"} in container["volumeMounts"]
    args = " ".join(container["args"])
    assert "spark.local.dir=/tmp/spark-local" in args and container["workingDir"] == "/tmp"
    for wall in ("spark.sql.variable.substitute=false", "spark.sql.runSQLOnFiles=false", "spark.ui.enabled=false"):
        assert wall in args


def test_executors_as_pods_get_a_dedicated_account_and_are_owned_by_the_driver(tmp_path: Path) -> None:
    spec = manifests(tmp_path, executor_instances=3)["Pod"]["spec"]
    args = " ".join(spec["containers"][0]["args"])
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == "spark-mcp-driver"
    assert "--master k8s://https://kubernetes.default.svc" in args and "--deploy-mode client" in args
    assert "spark.kubernetes.driver.pod.name=drv-0a1b2c3d4e" in args
    assert "spark.executor.instances=3" in args
    assert "spark.kubernetes.executor.label.spark-mcp.io/role=executor" in args


def test_the_token_is_in_the_secret_only_and_reaches_the_driver_as_env(tmp_path: Path) -> None:
    objects = manifests(tmp_path)
    assert objects["Secret"]["stringData"] == {"token": TOKEN}
    for kind in ("Pod", "Service", "NetworkPolicy"):
        assert TOKEN not in json.dumps(objects[kind]), kind
    env = objects["Pod"]["spec"]["containers"][0]["env"]
    token_env = next(e for e in env if e["name"] == "SPARK_CONNECT_AUTHENTICATE_TOKEN")
    assert token_env == {
        "name": "SPARK_CONNECT_AUTHENTICATE_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "drv-0a1b2c3d4e-token", "key": "token"}},
    }


def test_credentials_are_mounted_read_only_into_the_driver_pod_only(tmp_path: Path) -> None:
    with_creds = manifests(tmp_path, credentials_secret="tenant-creds")["Pod"]["spec"]
    mount = next(m for m in with_creds["containers"][0]["volumeMounts"] if m["name"] == "credentials")
    assert mount == {"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True}
    volume = next(v for v in with_creds["volumes"] if v["name"] == "credentials")
    assert volume["secret"] == {"secretName": "tenant-creds", "defaultMode": 0o400}
    without = manifests(tmp_path)["Pod"]["spec"]
    assert all(v["name"] != "credentials" for v in without["volumes"])


def test_only_the_server_reaches_the_connect_port_and_only_executors_the_rpc_ports(tmp_path: Path) -> None:
    policy = manifests(tmp_path)["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"]["spark-mcp.io/role"] == "driver"
    connect, rpc = policy["ingress"]
    assert connect["ports"] == [{"protocol": "TCP", "port": CONNECT_PORT}]
    assert connect["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "spark-mcp"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "spark-mcp"}},
        }
    ]
    assert rpc["from"] == [
        {"podSelector": {"matchLabels": {"spark-mcp.io/driver-id": "drv-0a1b2c3d4e", "spark-mcp.io/role": "executor"}}}
    ]
    service = manifests(tmp_path)["Service"]["spec"]
    assert service["clusterIP"] == "None" and service["selector"]["spark-mcp.io/role"] == "driver"


def test_a_namespace_per_tenant(tmp_path: Path) -> None:
    settings = config(tmp_path, tenants={"alice": "finance"}).driver.kubernetes
    assert namespace_for("alice", settings) == "spark-mcp-finance"
    assert namespace_for("bob", settings) == "spark-mcp-default"


def test_a_tenant_that_is_no_kubernetes_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="Kubernetes name"):
        config(tmp_path, tenants={"alice": "Finance Team"})


# --------------------------------------------------------------------------------------------
# deploy/kubernetes
# --------------------------------------------------------------------------------------------


def deploy_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def test_deploy_manifests_are_valid_kubernetes_objects() -> None:
    objects = deploy_objects()
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
    }
    for manifest in objects:
        assert round_trip(manifest) == normalised(manifest), manifest["metadata"]["name"]
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_rbac_is_limited_to_the_driver_namespaces() -> None:
    objects = deploy_objects()
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    driver_namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} - {"spark-mcp"}
    for role in (o for o in objects if o["kind"] == "Role"):
        assert role["metadata"]["namespace"] in driver_namespaces
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert not {"escalate", "bind", "impersonate", "update", "patch"} & set(rule["verbs"])
    server = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "spark-mcp-server")
    granted = {(r, v) for rule in server["rules"] for r in rule["resources"] for v in rule["verbs"]}
    # What the backend calls, and nothing that lets it read other workloads' secrets wholesale.
    assert ("pods/portforward", "create") in granted and ("secrets", "create") in granted
    assert ("secrets", "list") not in granted and ("secrets", "watch") not in granted


def test_the_server_deployment_runs_locked_down() -> None:
    deployment = next(o for o in deploy_objects() if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert pod["serviceAccountName"] == "spark-mcp"
    # The label the drivers' NetworkPolicies admit.
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "spark-mcp"


def test_the_shipped_configuration_is_a_valid_spark_mcp_config(tmp_path: Path) -> None:
    configmap = next(o for o in deploy_objects() if o["kind"] == "ConfigMap")
    (tmp_path / "spark-mcp.toml").write_text(configmap["data"]["spark-mcp.toml"])
    loaded = load_config(tmp_path / "spark-mcp.toml", environ={})
    assert loaded.driver.backend == "kubernetes"
    assert loaded.driver.kubernetes.server_namespace == "spark-mcp"


# --------------------------------------------------------------------------------------------
# Reading a pod's status.
# --------------------------------------------------------------------------------------------


def pod(phase: str = "Pending", *, conditions: list | None = None, containers: list | None = None, **meta: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "drv-1", "namespace": "ns", **meta},
        "spec": {"containers": [{"name": "driver", "image": "apache/spark:4.1.1"}]},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []},
    }


def container(state: dict) -> dict:
    return {
        "name": "driver",
        "image": "apache/spark:4.1.1",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }


STATUSES = [
    (pod(), PodState.STARTING, "pending", "just created"),
    (
        pod(
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                }
            ]
        ),
        PodState.STARTING,
        "Insufficient cpu",
        "no node has room (the start deadline decides)",
    ),
    (
        pod(
            containers=[container({"waiting": {"reason": "ContainerCreating"}})],
            conditions=[{"type": "PodScheduled", "status": "True"}],
        ),
        PodState.STARTING,
        "ContainerCreating",
        "pulling and creating",
    ),
    (
        pod(
            containers=[
                container(
                    {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "apache/spark:nope"'}}
                )
            ]
        ),
        PodState.FAILED,
        "ImagePullBackOff",
        "a missing image",
    ),
    (
        pod(
            containers=[
                container(
                    {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "drv-1-token" not found'}}
                )
            ]
        ),
        PodState.FAILED,
        "secret",
        "a missing Secret",
    ),
    (
        pod(
            "Running",
            containers=[container({"running": {"startedAt": "2026-11-27T10:00:00Z"}})],
            conditions=[{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        ),
        PodState.STARTING,
        "running",
        "running, Connect port not open yet",
    ),
    (
        pod(
            "Running",
            containers=[container({"running": {"startedAt": "2026-11-27T10:00:00Z"}})],
            conditions=[{"type": "Ready", "status": "True"}],
        ),
        PodState.READY,
        "accepts",
        "ready",
    ),
    (
        pod("Failed", containers=[container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})]),
        PodState.FAILED,
        "OOMKilled",
        "out of memory",
    ),
    (
        pod(
            "Running",
            containers=[
                container(
                    {"terminated": {"exitCode": 1, "reason": "Error", "message": "java.lang.ClassNotFoundException"}}
                )
            ],
        ),
        PodState.FAILED,
        "exit code 1",
        "the JVM exited",
    ),
    (
        pod("Running", deletionTimestamp="2026-11-27T10:00:00Z", conditions=[{"type": "Ready", "status": "True"}]),
        PodState.FAILED,
        "being deleted",
        "deleted under our feet",
    ),
    ({}, PodState.STARTING, "pending", "not visible yet (404 reads as empty)"),
]


@pytest.mark.parametrize(("status", "state", "says", "why"), STATUSES, ids=[s[3] for s in STATUSES])
def test_pod_readiness(status: dict, state: PodState, says: str, why: str) -> None:
    if status:
        round_trip(status)  # the shapes the API returns
    verdict = readiness(status)
    assert verdict.state is state
    assert says in verdict.reason


# --------------------------------------------------------------------------------------------
# The lifecycle, over a scripted API: this machine has no API server, so the five calls of
# KubeApi are played by a stand-in that records them and answers with the statuses above.
# --------------------------------------------------------------------------------------------


class ScriptedApi:
    def __init__(self, statuses: list[dict], *, fail_create: str | None = None) -> None:
        self.statuses = statuses
        self.fail_create = fail_create
        self.calls: list[tuple[str, ...]] = []
        self.objects: dict[tuple[str, str], dict] = {}
        self.tunnels: list[ScriptedTunnel] = []

    def create(self, manifest: dict) -> None:
        self.calls.append(("create", manifest["kind"], manifest["metadata"]["name"]))
        if manifest["kind"] == self.fail_create:
            raise RuntimeError(f"403 Forbidden: cannot create {manifest['kind']}")
        round_trip(manifest)
        self.objects[(manifest["kind"], manifest["metadata"]["name"])] = copy.deepcopy(manifest)

    def read_pod(self, namespace: str, name: str) -> dict:
        self.calls.append(("read_pod", name))
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.calls.append(("delete", kind, name))
        self.objects.pop((kind, name), None)

    def pod_log(self, namespace: str, name: str, tail_lines: int) -> str:
        return "Exception in thread main: java.lang.OutOfMemoryError\n"

    def open_tunnel(self, namespace: str, pod: str, port: int) -> ScriptedTunnel:
        tunnel = ScriptedTunnel()
        self.tunnels.append(tunnel)
        return tunnel


class ScriptedTunnel:
    port = 40001

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


READY = STATUSES[6][0]
STARTING = STATUSES[2][0]


def backend(tmp_path: Path, api: ScriptedApi, timeout: float = 60) -> KubernetesBackend:
    cfg = load_config(
        None,
        environ={},
        overrides={"home": str(tmp_path), "driver": {"backend": "kubernetes", "startup_timeout_s": timeout}},
    )
    return KubernetesBackend(cfg, lambda: api, poll_s=0)


@pytest.mark.anyio
async def test_start_creates_waits_and_connects_then_stop_deletes_everything(tmp_path: Path) -> None:
    api = ScriptedApi([STATUSES[0][0], STARTING, READY])
    k8s = backend(tmp_path, api)
    driver = await k8s.start("alice")
    assert [c[1] for c in api.calls if c[0] == "create"] == ["Secret", "NetworkPolicy", "Service", "Pod"]
    assert sum(1 for c in api.calls if c[0] == "read_pod") == 3
    assert (driver.host, driver.port, driver.backend) == ("localhost", 40001, "kubernetes")
    assert driver.usable and driver.token not in json.dumps(api.objects[("Pod", driver.id)])
    await k8s.stop(driver)
    assert api.objects == {}
    assert api.tunnels[0].closed
    deletes = [c[1] for c in api.calls if c[0] == "delete"]
    assert deletes[0] == "Pod"  # first, so nothing uses its Secret any more


@pytest.mark.anyio
async def test_a_failed_pod_is_reported_with_its_reason_and_cleaned_up(tmp_path: Path) -> None:
    api = ScriptedApi([STARTING, STATUSES[7][0]])  # OOMKilled
    with pytest.raises(DriverStartError, match="OOMKilled") as failure:
        await backend(tmp_path, api).start("alice")
    assert "OutOfMemoryError" in str(failure.value)  # the tail of its log
    assert api.objects == {} and not api.tunnels


@pytest.mark.anyio
async def test_a_pod_that_cannot_be_scheduled_fails_at_the_deadline_saying_why(tmp_path: Path) -> None:
    api = ScriptedApi([STATUSES[1][0]])
    with pytest.raises(DriverStartError, match="Insufficient cpu"):
        await backend(tmp_path, api, timeout=0.01).start("alice")
    assert api.objects == {}


@pytest.mark.anyio
async def test_a_refused_create_deletes_what_was_already_created(tmp_path: Path) -> None:
    api = ScriptedApi([READY], fail_create="Service")
    with pytest.raises(RuntimeError, match="403"):
        await backend(tmp_path, api).start("alice")
    assert api.objects == {}
    assert ("delete", "Secret", next(c[2] for c in api.calls if c[1] == "Secret")) in api.calls


@pytest.mark.anyio
async def test_a_cancelled_start_still_cleans_up(tmp_path: Path) -> None:
    api = ScriptedApi([STARTING])
    k8s = KubernetesBackend(
        load_config(None, environ={}, overrides={"home": str(tmp_path), "driver": {"backend": "kubernetes"}}),
        lambda: api,
        poll_s=0.01,
    )
    with anyio.move_on_after(0.2):
        await k8s.start("alice")
    assert api.objects == {}


@pytest.mark.anyio
async def test_no_cluster_is_a_clear_driver_start_error(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        environ={},
        overrides={
            "home": str(tmp_path),
            "driver": {"backend": "kubernetes", "kubernetes": {"kubeconfig": str(tmp_path / "missing")}},
        },
    )
    with pytest.raises(DriverStartError, match=r"driver\.kubernetes\.kubeconfig"):
        await KubernetesBackend(cfg).start("alice")
