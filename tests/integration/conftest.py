"""Integration tests run against a real Kafka + FerretDB and real service processes, started on free
ports by the lawtrail_local pytest plugin (fixtures `stack`, `start_service`)."""

pytest_plugins = ["lawtrail_local.pytest_plugin"]
