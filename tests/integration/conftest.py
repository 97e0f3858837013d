"""Integration tests run against a real Kafka + FerretDB and real service processes, started on free
ports by the lawtrail_local pytest plugin (fixtures `stack`, `start_service`)."""

pytest_plugins = ["lawtrail_local.pytest_plugin"]


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    """The index-coverage test checks the queries every other integration test made: run it last."""
    items.sort(key=lambda item: "test_index_coverage" in item.nodeid)
