"""Lawtrail's local infrastructure without Docker: Kafka from Maven Central jars, FerretDB from a Go wrapper.

`Stack` starts both (fetching/building them into a per-machine cache the first time) and creates the
topics of deploy/local/topics.toml; `ServiceProcess` runs a Lawtrail service against it. The CLI
(`python -m lawtrail_local up|down|status|logs`) and the pytest plugin (`lawtrail_local.pytest_plugin`)
are thin layers over these.
"""

from lawtrail_local.errors import MissingToolError, NotReadyError, PortInUseError, StackError
from lawtrail_local.ports import ensure_port_free, free_port, free_ports
from lawtrail_local.services import SERVICES, ServiceProcess, ServiceSpec, health_status, service_spec
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic, create_topics, load_topics

__all__ = [
    "SERVICES",
    "MissingToolError",
    "NotReadyError",
    "PortInUseError",
    "ServiceProcess",
    "ServiceSpec",
    "Stack",
    "StackError",
    "Topic",
    "create_topics",
    "ensure_port_free",
    "free_port",
    "free_ports",
    "health_status",
    "load_topics",
    "service_spec",
]
