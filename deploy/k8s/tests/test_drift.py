"""The manifests say what the code says. Services, settings, ports, topics and consumer groups are
read from the code (codefacts.py); each test names what is missing or extra, so a service or topic
that lands without its Kubernetes counterpart fails here (deploy/k8s/README.md: adding a service)."""

from __future__ import annotations

from typing import Any

import pytest
from codefacts import ServiceFacts, declared_topics
from k8s_support import of_kind

OVERLAYS = ("dev", "prod")
# Deployments that are not Lawtrail services (components/tracing).
INFRASTRUCTURE = {"otel-collector"}
# Settings every pod must set: no dev key, no loopback address, no default local path in a cluster.
REQUIRED = {
    "LAWTRAIL_SERVICE_NAME",
    "LAWTRAIL_GRPC_ADDRESS",
    "LAWTRAIL_METRICS_ADDRESS",
    "LAWTRAIL_GRPC_HEALTH_ADDRESS",
    "LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS",
    "LAWTRAIL_KAFKA_TLS_CA",
    "LAWTRAIL_KAFKA_TLS_CERT",
    "LAWTRAIL_KAFKA_TLS_KEY",
    "LAWTRAIL_MONGO_URI",
    "LAWTRAIL_MONGO_DATABASE",
    "LAWTRAIL_AUTH_PUBLIC_KEYS",
    "LAWTRAIL_AUTH_ISSUER",
    "LAWTRAIL_AUTH_AUDIENCE",
    "LAWTRAIL_DATA_DIR",
    "LAWTRAIL_GRPC_TLS_CERT",
    "LAWTRAIL_GRPC_TLS_KEY",
    "LAWTRAIL_GRPC_TLS_CLIENT_CA",
    "LAWTRAIL_OTEL_EXPORTER_OTLP_ENDPOINT",
}


def _environment(docs: list[dict[str, Any]], service: str) -> dict[str, str | None]:
    deployment = of_kind(docs, "Deployment")[service]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == service]
    configmaps = of_kind(docs, "ConfigMap")
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e.get("value") for e in container.get("env", [])})
    return env


def test_services_are_found_in_the_code(services: list[ServiceFacts]) -> None:
    assert {"case-svc", "media-svc"} <= {s.name for s in services}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_in_the_code_is_deployed_and_nothing_else(rendered, services, overlay) -> None:
    docs = rendered[overlay]
    names = {s.name for s in services}
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        present = set(of_kind(docs, kind)) - INFRASTRUCTURE
        assert names - present == set(), f"{overlay}: no {kind} for {sorted(names - present)}"
        assert present - names == set(), (
            f"{overlay}: {kind} for no service in services/: {sorted(present - names)}"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_names_are_settings_the_code_reads(rendered, services, overlay) -> None:
    for service in services:
        env = _environment(rendered[overlay], service.name)
        unknown = sorted(n for n in env if n.startswith("LAWTRAIL_") and n not in service.env_names)
        assert not unknown, f"{overlay}: {service.name} sets {unknown}, which its settings do not read"
        missing = sorted((REQUIRED | _key_settings(service)) - set(env))
        assert not missing, f"{overlay}: {service.name} does not set {missing}"
        assert env["LAWTRAIL_SERVICE_NAME"] == service.name
        assert env["LAWTRAIL_MONGO_DATABASE"] == service.defaults.mongo_database


def _key_settings(service: ServiceFacts) -> set[str]:
    """Settings naming trusted public keys: their default is a development key pair, never in a cluster."""
    return {n for n in service.env_names if n.endswith("_PUBLIC_KEYS")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_match_the_services_settings(rendered, services, overlay) -> None:
    docs = rendered[overlay]
    for service in services:
        env = _environment(docs, service.name)
        host, _, grpc_port = str(env["LAWTRAIL_GRPC_ADDRESS"]).rpartition(":")
        _, _, metrics_port = str(env["LAWTRAIL_METRICS_ADDRESS"]).rpartition(":")
        _, _, health_port = str(env["LAWTRAIL_GRPC_HEALTH_ADDRESS"]).rpartition(":")
        assert host == "0.0.0.0", f"{service.name}: a pod listens on its pod IP, not {host}"  # noqa: S104
        assert (int(grpc_port), int(metrics_port)) == (service.grpc_port, service.metrics_port), (
            f"{overlay}: {service.name} listens on {grpc_port}/{metrics_port}, the code's defaults are "
            f"{service.grpc_port}/{service.metrics_port}"
        )
        deployment = of_kind(docs, "Deployment")[service.name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {
            "grpc": service.grpc_port,
            "metrics": service.metrics_port,
            "health": int(health_port),
        }
        svc = of_kind(docs, "Service")[service.name]
        exposed = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        assert exposed == {"grpc": (service.grpc_port, "grpc"), "metrics": (service.metrics_port, "metrics")}
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items(), f"{service.name}: Service selects no pod"


def test_topics_toml_lists_exactly_the_topics_the_code_uses(services) -> None:
    used = {t for s in services for t in s.all_topics}
    declared = set(declared_topics())
    assert used - declared == set(), f"deploy/local/topics.toml lacks {sorted(used - declared)}"
    assert declared - used == set(), (
        f"deploy/local/topics.toml has topics no code uses: {sorted(declared - used)}"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_match_topics_toml(rendered, overlay) -> None:
    topics = of_kind(rendered[overlay], "KafkaTopic")
    have = {t["spec"].get("topicName", name): t["spec"]["partitions"] for name, t in topics.items()}
    want = declared_topics()
    wrong = {n: (p, want[n]) for n, p in have.items() if n in want and want[n] != p}
    assert have == want, (
        f"{overlay}: KafkaTopics differ from deploy/local/topics.toml: "
        f"missing {sorted(set(want) - set(have))}, "
        f"extra {sorted(set(have) - set(want))}, partitions (rendered, declared) {wrong}"
    )
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "lawtrail", name
        assert topic["spec"]["config"]["retention.ms"] == -1, f"{name}: events are the record (runbook)"


def _acls(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"].get("patternType", "literal"), op)
        for acl in user["spec"]["authorization"]["acls"]
        for op in acl["operations"]
    }


def _expected_acls(service: ServiceFacts) -> set[tuple[str, str, str, str]]:
    acls = set()
    for topic in service.produces:
        acls |= {("topic", topic, "literal", "Describe"), ("topic", topic, "literal", "Write")}
    for consumer in service.consumers:
        for topic in consumer.topics:
            acls |= {("topic", topic, "literal", "Describe"), ("topic", topic, "literal", "Read")}
        acls |= {
            ("group", consumer.group, "literal", "Describe"),
            ("group", consumer.group, "literal", "Read"),
        }
        if consumer.dlq:
            acls |= {
                ("topic", consumer.dlq, "literal", "Describe"),
                ("topic", consumer.dlq, "literal", "Write"),
            }
        if consumer.faust:
            # faust creates and uses its internal topics (changelogs, repartition) named "<app id>-...".
            prefix = f"{consumer.group}-"
            acls |= {("topic", prefix, "prefix", op) for op in ("Create", "Describe", "Read", "Write")}
    return acls


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_kafka_user_has_exactly_the_acls_its_code_needs(rendered, services, overlay) -> None:
    users = of_kind(rendered[overlay], "KafkaUser")
    assert set(users) == {s.name for s in services}, f"{overlay}: KafkaUsers {sorted(users)}"
    for service in services:
        user = users[service.name]
        assert user["spec"]["authentication"]["type"] == "tls"
        have, want = _acls(user), _expected_acls(service)
        assert have == want, (
            f"{overlay}: KafkaUser {service.name}: missing {sorted(want - have)}, "
            f"not needed {sorted(have - want)}"
        )
        deployment = of_kind(rendered[overlay], "Deployment")[service.name]
        secrets = {
            v.get("secret", {}).get("secretName") for v in deployment["spec"]["template"]["spec"]["volumes"]
        }
        assert service.name in secrets, f"{overlay}: {service.name} does not mount its KafkaUser's Secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_own_mongodb_user_and_database(rendered, services, overlay) -> None:
    (mongo,) = of_kind(rendered[overlay], "MongoDBCommunity").values()
    users = {u["name"]: u for u in mongo["spec"]["users"]}
    assert set(users) == {s.name for s in services}, f"{overlay}: MongoDB users {sorted(users)}"
    for service in services:
        user = users[service.name]
        assert user["roles"] == [{"name": "readWrite", "db": service.defaults.mongo_database}], (
            f"{overlay}: {service.name} may read and write only its own database"
        )
        deployment = of_kind(rendered[overlay], "Deployment")[service.name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        (uri,) = [e for e in container["env"] if e["name"] == "LAWTRAIL_MONGO_URI"]
        assert uri["valueFrom"]["secretKeyRef"]["name"] == user["connectionStringSecretName"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_a_certificate_for_its_dns_names(rendered, services, overlay) -> None:
    docs = rendered[overlay]
    (namespace,) = of_kind(docs, "Namespace")
    certificates = {c["spec"]["secretName"]: c for c in of_kind(docs, "Certificate").values()}
    for service in services:
        secret = f"{service.name}-grpc-tls"
        assert secret in certificates, f"{overlay}: no cert-manager Certificate for {service.name}"
        assert f"{service.name}.{namespace}.svc" in certificates[secret]["spec"]["dnsNames"]
        deployment = of_kind(docs, "Deployment")[service.name]
        volumes = {
            v.get("secret", {}).get("secretName") for v in deployment["spec"]["template"]["spec"]["volumes"]
        }
        assert secret in volumes, f"{overlay}: {service.name} does not mount {secret}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_and_monitoring_select_every_service(rendered, services, overlay) -> None:
    docs = rendered[overlay]
    policies = of_kind(docs, "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    selector = policies["services-ingress"]["spec"]["podSelector"]["matchLabels"]
    (monitor,) = of_kind(docs, "ServiceMonitor").values()
    for service in services:
        pod_labels = of_kind(docs, "Deployment")[service.name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items(), f"{overlay}: network policies miss {service.name}"
        svc_labels = of_kind(docs, "Service")[service.name]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc_labels.items(), (
            f"{overlay}: Prometheus does not scrape {service.name}"
        )
