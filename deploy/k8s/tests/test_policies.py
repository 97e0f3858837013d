"""Policies over the rendered YAML of every overlay (what kube-linter would check, and Lawtrail's
own rules): native gRPC probes, requests and limits, non-root, read-only root filesystem, no
privilege escalation, all capabilities dropped, pinned image tags, a PodDisruptionBudget and a
HorizontalPodAutoscaler per Deployment, writable paths only on mounted volumes."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_support import of_kind

OVERLAYS = ("dev", "prod")


def _deployments(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> dict[str, dict[str, Any]]:
    deployments = of_kind(rendered[overlay], "Deployment")
    assert deployments, f"{overlay} renders no Deployment"
    return deployments


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _is_service(deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return labels.get("app.kubernetes.io/component") == "service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_container_has_native_grpc_probes_on_its_health_port(rendered, overlay) -> None:
    services = {n: d for n, d in _deployments(rendered, overlay).items() if _is_service(d)}
    assert services, f"{overlay}: no Lawtrail service Deployment"
    for name, deployment in services.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                spec = container.get(probe)
                assert spec, f"{overlay}: {name}/{container['name']} has no {probe}"
                assert "grpc" in spec, (
                    f"{overlay}: {name}: {probe} must be a native gRPC probe (grpc.health.v1)"
                )
                assert spec["grpc"]["port"] == ports.get("health"), (
                    f"{overlay}: {name}: {probe} must use the plaintext health port, "
                    f"not {spec['grpc']['port']}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_other_container_has_readiness_and_liveness_probes(rendered, overlay) -> None:
    for name, deployment in _deployments(rendered, overlay).items():
        if _is_service(deployment):
            continue
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert container.get(probe), f"{overlay}: {name}/{container['name']} has no {probe}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered, overlay) -> None:
    for name, deployment in _deployments(rendered, overlay).items():
        for container in _containers(deployment):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(kind, {}), (
                        f"{overlay}: {name}/{container['name']} lacks {kind}.{resource}"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_locked_down(rendered, overlay) -> None:
    for name, deployment in _deployments(rendered, overlay).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"].get("runAsNonRoot") is True, f"{overlay}: {name}: runAsNonRoot"
        assert pod["securityContext"].get("runAsUser", 0) != 0, f"{overlay}: {name}: runs as uid 0"
        assert pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False, f"{overlay}: {name}: API token mounted"
        assert pod.get("serviceAccountName") == name, f"{overlay}: {name}: its own ServiceAccount"
        for container in _containers(deployment):
            security = container.get("securityContext", {})
            where = f"{overlay}: {name}/{container['name']}"
            assert security.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem writable"
            assert security.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation"
            assert security.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities kept"
            assert not security.get("capabilities", {}).get("add"), f"{where}: capabilities added"
            assert security.get("privileged") is not True, f"{where}: privileged"
            assert security.get("runAsNonRoot", True) is True, f"{where}: runAsNonRoot overridden"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_to_a_version(rendered, overlay) -> None:
    for name, deployment in _deployments(rendered, overlay).items():
        for container in _containers(deployment):
            image = container["image"]
            repository, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
            assert repository, f"{overlay}: {name}: image {image} has no repository"
            assert "/" not in tag, f"{overlay}: {name}: image {image} has no tag"
            assert tag != "latest", f"{overlay}: {name}: image {image} uses latest"
            assert container.get("imagePullPolicy") != "Always" or tag == "digest"
            assert "." in repository.split("/")[0], (
                f"{overlay}: {name}: image {image} must name its registry (set by the overlay's images:)"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_pdb_and_an_hpa(rendered, overlay) -> None:
    pdbs = of_kind(rendered[overlay], "PodDisruptionBudget").values()
    hpas = of_kind(rendered[overlay], "HorizontalPodAutoscaler").values()
    for name, deployment in _deployments(rendered, overlay).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, f"{overlay}: {name} needs exactly one PodDisruptionBudget"
        scaled = [
            h
            for h in hpas
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        assert len(scaled) == 1, f"{overlay}: {name} needs exactly one HorizontalPodAutoscaler"
        hpa = scaled[0]["spec"]
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_prod_survives_a_node_loss(rendered) -> None:
    """Prod: two replicas at least, Kafka and MongoDB on three nodes with replication 3 / min ISR 2."""
    docs = rendered["prod"]
    for name, hpa in of_kind(docs, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["minReplicas"] >= 2, f"prod: {name} minReplicas"
    (pool,) = of_kind(docs, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] >= 3
    for name, topic in of_kind(docs, "KafkaTopic").items():
        assert topic["spec"]["replicas"] == 3, f"prod: topic {name} replicas"
        assert topic["spec"]["config"]["min.insync.replicas"] == 2, f"prod: topic {name} min ISR"
    (mongo,) = of_kind(docs, "MongoDBCommunity").values()
    assert mongo["spec"]["members"] >= 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_and_configured_paths_are_on_mounted_volumes(rendered, overlay) -> None:
    """With a read-only root filesystem, every path a setting names must be under a volume mount."""
    configmaps = of_kind(rendered[overlay], "ConfigMap")
    for name, deployment in _deployments(rendered, overlay).items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])]
            values = {e["name"]: e.get("value") for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                values.update(configmaps[source["configMapRef"]["name"]]["data"])
            for variable, value in values.items():
                if isinstance(value, str) and value.startswith("/"):
                    assert any((value.rstrip("/") + "/").startswith(m) for m in mounts), (
                        f"{overlay}: {name}: {variable}={value} is not on a mounted volume"
                    )
            assert any(m == "/tmp/" for m in mounts), f"{overlay}: {name}: no writable /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_namespace_enforces_the_restricted_pod_security_profile(rendered, overlay) -> None:
    (namespace,) = of_kind(rendered[overlay], "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in rendered[overlay]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace["metadata"]["name"], doc["metadata"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_r11b_archive_store_is_a_separate_volume_from_the_content_store(rendered, overlay) -> None:
    claims = of_kind(rendered[overlay], "PersistentVolumeClaim")
    assert {"media-content", "archive-store"} <= set(claims), f"{overlay}: claims {sorted(claims)}"
    for name in ("media-content", "archive-store"):
        assert claims[name]["spec"]["accessModes"] == ["ReadWriteMany"], (
            f"{overlay}: {name} shared by replicas"
        )
    if overlay == "prod":
        classes = {n: claims[n]["spec"].get("storageClassName") for n in ("media-content", "archive-store")}
        assert all(classes.values()), f"prod: name the storage classes {classes}"
        assert classes["media-content"] != classes["archive-store"], "prod: one storage for both copies"
