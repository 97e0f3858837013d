"""Every rendered resource is valid: built-in kinds against Kubernetes' own schemas
(kubernetes-validate, strict: unknown fields are errors), custom resources against the published
CRDs kept in deploy/k8s/crds (Strimzi, cert-manager, Prometheus Operator, MongoDB Community)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k8s_support import K8S

# The oldest Kubernetes release Lawtrail supports (native gRPC probes, autoscaling/v2, policy/v1,
# Pod Security Admission are all GA there) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


def _crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every kept CRD version."""
    schemas = {}
    for path in sorted((K8S / "crds").rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema, rejecting unknown fields the API server
    would silently prune (a misspelt Strimzi option would otherwise vanish without a word)."""
    schema = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            walk(child)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    # Every object has metadata; the CRD schemas describe it only as `type: object`.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


CRDS = _crds()
BUILT_IN_GROUPS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_every_overlay_renders(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        assert len(docs) > 20, f"overlay {name} rendered only {len(docs)} resources"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_resources_pass_kubernetes_validate_strict(
    rendered: dict[str, list[dict[str, Any]]], version: str
) -> None:
    errors = []
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"] not in BUILT_IN_GROUPS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                errors.append(f"{overlay}: {_id(doc)}: {error.message} at {list(error.path)}")
    assert not errors, "\n".join(errors)


def test_custom_resources_match_their_published_crds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    errors, checked = [], set()
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"] in BUILT_IN_GROUPS:
                continue
            key = (doc["apiVersion"], doc["kind"])
            if key not in CRDS:
                errors.append(f"{overlay}: {_id(doc)}: no CRD kept for {key} in deploy/k8s/crds")
                continue
            checked.add(doc["kind"])
            validator = jsonschema.Draft7Validator(_strict(CRDS[key]))
            errors += [
                f"{overlay}: {_id(doc)}: {e.message} at {'.'.join(map(str, e.absolute_path))}"
                for e in validator.iter_errors(doc)
            ]
    assert not errors, "\n".join(errors)
    expected = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "MongoDBCommunity", "Certificate"}
    assert expected | {"Issuer", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= checked


def test_the_crd_check_rejects_a_misspelt_field() -> None:
    """The strict CRD check itself: an unknown field in a Strimzi topic is an error, not pruned."""
    schema = _strict(CRDS[("kafka.strimzi.io/v1", "KafkaTopic")])
    topic = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"partitions": 3, "replica": 3},
    }
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(topic)]
    assert any("'replica' was unexpected" in e for e in errors), errors


def test_every_kept_crd_has_its_licence() -> None:
    for folder in sorted(p for p in (K8S / "crds").iterdir() if p.is_dir()):
        licences = [p for p in folder.iterdir() if p.name.upper().startswith(("LICENSE", "APACHE"))]
        assert licences, f"{folder.relative_to(K8S)} has no licence file"
        assert folder.name in (K8S / "crds/SOURCES.md").read_text(), f"{folder.name} missing in SOURCES.md"


def test_no_commonlabels_anywhere() -> None:
    """`labels:` (explicit about selectors) instead of the deprecated `commonLabels:`."""
    offenders = [
        str(p.relative_to(K8S))
        for p in K8S.rglob("kustomization.yaml")
        if "commonLabels" in (yaml.safe_load(p.read_text()) or {})
    ]
    assert not offenders, offenders
