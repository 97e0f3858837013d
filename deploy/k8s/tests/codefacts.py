"""What the code declares, read from the code itself: services, settings, ports, topics, groups.

The manifests under deploy/k8s are checked against these facts (test_drift.py), so a new service,
setting, topic or consumer group that lands in the code without its Kubernetes counterpart fails
`make k8s-validate` with a message naming what is missing.

- services: every ``services/<name>/pyproject.toml`` (its package is the wheel's ``src/<pkg>``);
- settings: every pydantic ``BaseSettings`` subclass defined in the service's package (environment
  name = the class's ``env_prefix`` + the field name, upper case), including servicekit's base ones;
- ports and derived defaults: the service's ``ServiceSettings`` subclass instantiated with defaults;
- consumers (topics, groups) and whether it publishes: its real ``bootstrap(rt)`` run against a
  runtime that never connects (a lazy Mongo client, a producer that is never started), with the
  Kafka-shaping settings the manifests give it (names ending in ``_TOPICS``, ``_GROUP``, ``_APP_ID``:
  what it consumes is configuration, e.g. the ledger's topics) and the defaults otherwise;
- a faust stream app: a setting ``<x>_app_id`` (its consumer group, and the prefix of the internal
  topics faust creates, ``<app_id>-…``) with ``<x>_topics`` (its source topics);
- published topics: the topic names of its own context its modules hold
  (``lawtrail.<ctx>.v<N>.events``, ctx = its name without ``-svc``); dead-letter topics:
  ``dlq_topic(group)`` of each consumer group (not of faust apps).
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic_settings import BaseSettings
from pymongo import AsyncMongoClient
from servicekit.app import Runtime
from servicekit.config import ServiceSettings
from servicekit.grpc.audit import AUDIT_TOPIC
from servicekit.messaging.consumer import dlq_topic
from servicekit.messaging.outbox import OutboxRelay
from servicekit.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
TOPIC_NAME = re.compile(r"^lawtrail\.[a-z]+\.v[0-9]+\.events$")


# Settings that decide what a service consumes; the manifests' values are used to derive the facts.
KAFKA_SHAPING = ("_TOPICS", "_GROUP", "_APP_ID")


@dataclass(frozen=True)
class Consumer:
    group: str
    topics: tuple[str, ...]
    # A faust app: consumer group = app id; it creates internal topics "<app id>-..." (changelogs,
    # repartition) and parks nothing in a dead-letter topic.
    faust: bool = False

    @property
    def dlq(self) -> str | None:
        return None if self.faust else dlq_topic(self.group)


@dataclass(frozen=True)
class ServiceFacts:
    name: str  # service_name, e.g. case-svc (= the folder name)
    package: str  # e.g. case_svc
    settings_class: type[ServiceSettings]
    defaults: ServiceSettings
    env_names: frozenset[str]  # every LAWTRAIL_* variable the code reads
    consumers: tuple[Consumer, ...]
    produces: frozenset[str]

    @property
    def grpc_port(self) -> int:
        return int(self.defaults.grpc_address.rpartition(":")[2])

    @property
    def metrics_port(self) -> int:
        return int(self.defaults.metrics_address.rpartition(":")[2])

    @property
    def consumed_topics(self) -> frozenset[str]:
        return frozenset(t for c in self.consumers for t in c.topics)

    @property
    def all_topics(self) -> frozenset[str]:
        return self.produces | self.consumed_topics | {c.dlq for c in self.consumers if c.dlq}


def service_dirs() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "services").glob("*/pyproject.toml"))


def _package_of(service_dir: Path) -> str:
    project = tomllib.loads((service_dir / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    (package,) = packages  # one package per service (docs/development.md)
    return Path(package).name


def _modules(package: str) -> Iterator[Any]:
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        yield importlib.import_module(info.name)


def _settings_classes(package: str) -> list[type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {}
    for module in _modules(package):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value.__module__.startswith(f"{package}.")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def _env_names(classes: list[type[BaseSettings]]) -> frozenset[str]:
    names = set()
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names.update(f"{prefix}{field}".upper() for field in cls.model_fields)
    return frozenset(names)


def _topic_constants(package: str) -> set[str]:
    """Topic names the package's modules hold as module-level values (``TOPIC = events_topic_of(...)``,
    or a literal), read at run time so that computed names count too."""
    return {
        value
        for module in _modules(package)
        for value in vars(module).values()
        if isinstance(value, str) and TOPIC_NAME.match(value)
    }


class _NeverStartedProducer:
    """Stands in for the Kafka producer: bootstrap only stores it; nothing here sends."""


async def _wiring(settings: ServiceSettings, package: str) -> Any:
    bootstrap = importlib.import_module(f"{package}.bootstrap").bootstrap
    metrics = Metrics(CollectorRegistry())
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongo_uri, connect=False)
    producer: Any = _NeverStartedProducer()
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        mongo=mongo,
        db=mongo[settings.mongo_database],
        producer=producer,
        relay=OutboxRelay(producer, metrics=metrics),
        verifier=object(),  # type: ignore[arg-type]  # bootstrap hands it to no one here
    )
    try:
        return await bootstrap(runtime)
    finally:
        await mongo.close()


def _faust_apps(settings: BaseSettings) -> list[Consumer]:
    apps = []
    for field in type(settings).model_fields:
        if field.endswith("_app_id"):
            topics = getattr(settings, field.removesuffix("_app_id") + "_topics", None)
            if not topics:
                raise AssertionError(f"{field}: a faust app needs its source topics in {field[:-7]}_topics")
            apps.append(Consumer(str(getattr(settings, field)), tuple(topics), faust=True))
    return apps


def service_facts(service_dir: Path, scratch: Path, configured: dict[str, str] | None = None) -> ServiceFacts:
    """The facts of one service; ``configured``: the LAWTRAIL_* environment its manifests set."""
    package = _package_of(service_dir)
    classes = _settings_classes(package)
    service_settings = [c for c in classes if issubclass(c, ServiceSettings)]
    if len(service_settings) != 1:
        raise AssertionError(f"{package}: expected one ServiceSettings subclass, found {service_settings}")
    settings_class = service_settings[0]
    defaults = settings_class()
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    shaping = {
        name.removeprefix(prefix).lower(): value
        for name, value in (configured or {}).items()
        if name.startswith(prefix) and name.endswith(KAFKA_SHAPING)
    }
    # data_dir: where bootstrap may create dev keys or a content folder; never the checkout.
    scratch_settings = settings_class.model_validate(
        {**shaping, "data_dir": scratch, "mongo_uri": "mongodb://127.0.0.1:9/"}
    )
    try:
        wiring = asyncio.run(_wiring(scratch_settings, package))
    except (OSError, ConnectionError) as error:  # KafkaConnectionError, a refused Mongo connection
        raise AssertionError(
            f"{package}.bootstrap tried to reach the network ({error}); what it consumes must come from "
            f"settings (set them in deploy/k8s/base/services/{service_dir.name}/config.env)"
        ) from error
    consumers = tuple(Consumer(spec.group_id, tuple(spec.topics)) for spec in wiring.consumers)
    consumers += tuple(_faust_apps(scratch_settings))
    # One topic per producing context (architecture): a service with outboxes publishes the topic of
    # its own context, named as a constant in its code (lawtrail.retention.v1.events for retention-svc).
    context = defaults.service_name.removesuffix("-svc")
    own = {t for t in _topic_constants(package) if t.split(".")[1] == context}
    if wiring.outbox_collections and not own:
        raise AssertionError(f"{package} has outboxes but no lawtrail.{context}.v<N>.events topic constant")
    produces = frozenset(own) if wiring.outbox_collections else frozenset()
    # Every service's gRPC server publishes one RpcCalled per call (servicekit's audit interceptor,
    # wired by run_service) to the audit topic that access-svc's ledger appends (R4, R23-3).
    produces |= {AUDIT_TOPIC}
    return ServiceFacts(
        name=defaults.service_name,
        package=package,
        settings_class=settings_class,
        defaults=defaults,
        env_names=_env_names([ServiceSettings, *classes]),
        consumers=consumers,
        produces=produces,
    )


def declared_topics() -> dict[str, int]:
    """deploy/local/topics.toml: name -> partitions (the one list of topics, local and Kubernetes)."""
    data = tomllib.loads((ROOT / "deploy/local/topics.toml").read_text())
    return {t["name"]: int(t["partitions"]) for t in data["topic"]}
