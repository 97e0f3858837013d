"""Parsing and validation of deploy/local/topics.toml."""

from __future__ import annotations

import pytest
from lawtrail_local.errors import StackError
from lawtrail_local.topics import Topic, load_topics, parse_topics


def test_the_repository_topics_file_parses() -> None:
    topics = load_topics()
    by_name = {t.name: t.partitions for t in topics}
    assert by_name["lawtrail.case.v1.events"] == 3
    assert by_name["lawtrail.media.v1.events"] == 3
    assert all(t.partitions >= 1 for t in topics)


def test_parse_keeps_order_and_counts() -> None:
    text = '[[topic]]\nname = "a"\npartitions = 3\n\n[[topic]]\nname = "b.dlq"\npartitions = 1\n'
    assert parse_topics(text) == [Topic("a", 3), Topic("b.dlq", 1)]


def test_no_topics_is_an_empty_list() -> None:
    assert parse_topics("# nothing yet\n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[topic]]\npartitions = 1\n", "non-empty string `name`"),
        ('[[topic]]\nname = "a"\n', "integer `partitions` >= 1"),
        ('[[topic]]\nname = "a"\npartitions = 0\n', "integer `partitions` >= 1"),
        ('[[topic]]\nname = "a"\npartitions = "3"\n', "integer `partitions` >= 1"),
        ('[[topic]]\nname = "a"\npartitions = true\n', "integer `partitions` >= 1"),
        ('[[topic]]\nname = "a"\npartitions = 1\nreplicas = 3\n', "unknown keys ['replicas']"),
        ('[[topic]]\nname = "a"\npartitions = 1\n[[topic]]\nname = "a"\npartitions = 2\n', "declared twice"),
        ('topic = "a"\n', "array of tables"),
        ("[[topic]\n", "topics.toml"),
    ],
)
def test_invalid_files_fail_with_a_message_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(StackError, match=r"topics\.toml") as excinfo:
        parse_topics(text)
    assert message in str(excinfo.value)
