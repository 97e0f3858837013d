"""JSON log lines carry the service, the bound request/event id and extras, per asyncio task."""

import asyncio
import io
import json
import logging

import pytest
from servicekit.logging import JsonFormatter, configure_logging, log_context


def _read(handler_stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in handler_stream.getvalue().splitlines()]


@pytest.fixture
def stream() -> "io.StringIO":
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("case-svc"))
    logger = logging.getLogger("test.servicekit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return out


def test_every_line_has_the_standard_fields_even_without_context(stream: io.StringIO) -> None:
    logging.getLogger("test.servicekit").info("case %s opened", "c-1")
    (line,) = _read(stream)
    assert line["msg"] == "case c-1 opened"
    assert line["level"] == "INFO"
    assert line["service"] == "case-svc"
    assert line["logger"] == "test.servicekit"
    assert line["request_id"] is None
    assert line["event_id"] is None
    assert str(line["ts"]).endswith("+00:00")


def test_bound_ids_and_extras_appear_and_nest(stream: io.StringIO) -> None:
    log = logging.getLogger("test.servicekit")
    with log_context(request_id="r-1"):
        with log_context(event_id="e-9"):
            log.info("applied", extra={"topic": "lawtrail.media.v1.events"})
        log.info("after")
    log.info("outside")
    inner, after, outside = _read(stream)
    assert (inner["request_id"], inner["event_id"], inner["topic"]) == (
        "r-1",
        "e-9",
        "lawtrail.media.v1.events",
    )
    assert (after["request_id"], after["event_id"]) == ("r-1", None)
    assert (outside["request_id"], outside["event_id"]) == (None, None)


async def test_each_task_sees_its_own_context(stream: io.StringIO) -> None:
    log = logging.getLogger("test.servicekit")

    async def handle(request_id: str) -> None:
        with log_context(request_id=request_id):
            await asyncio.sleep(0)
            log.info("handled")

    await asyncio.gather(handle("a"), handle("b"))
    assert sorted(str(line["request_id"]) for line in _read(stream)) == ["a", "b"]


def test_exceptions_are_logged_with_their_traceback(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("test.servicekit").exception("failed")
    (line,) = _read(stream)
    assert "RuntimeError: boom" in str(line["exc"])


def test_configure_logging_installs_one_json_handler_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("media-svc", "DEBUG")
        with log_context(request_id="r-2"):
            logging.getLogger("media_svc.x").debug("hello")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert (line["service"], line["msg"], line["request_id"]) == ("media-svc", "hello", "r-2")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
