"""An example notification service for the legal affairs office (法制机构), built only on the
kafka-python event SDK (`lawtrail_client.events`).

It e-mails the office on:
- `lawtrail.media.v1.IntegrityCheckFailed` (R23-2: stored evidence does not match its hash),
- `lawtrail.retention.v1.LongTermHoldPlaced` (R13) — when the installed contracts have it (retention-svc
  publishes it; older contracts lack the type and the notifier says so at start),
- `lawtrail.compliance.v1.FindingRaised` with severity SERIOUS (R23's suspension/discipline grade).

Run:  python examples/notifier/notifier.py   (settings from the environment, see `Settings.from_env`)

Delivery is at-least-once (the SDK commits after each mail): after a crash between sending and the
commit, one mail may be sent twice. Mails carry the event id so a reader can tell.
"""

from __future__ import annotations

import logging
import os
import signal
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from lawtrail.compliance.v1.compliance_events_pb2 import FindingRaised
from lawtrail.compliance.v1.finding_pb2 import SEVERITY_SERIOUS
from lawtrail.media.v1.media_events_pb2 import IntegrityCheckFailed
from lawtrail_client.events import EventConsumer, EventMeta, event_class

log = logging.getLogger("notifier")
LONG_TERM_HOLD = "lawtrail.retention.v1.LongTermHoldPlaced"


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "legal-office-notifier"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    mail_from: str = "lawtrail-notifier@localhost"
    mail_to: str = "legal-office@localhost"
    dead_letter_topic: str = "legal-office-notifier.dlq"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            bootstrap_servers=env.get("LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            group_id=env.get("NOTIFIER_GROUP_ID", cls.group_id),
            smtp_host=env.get("NOTIFIER_SMTP_HOST", cls.smtp_host),
            smtp_port=int(env.get("NOTIFIER_SMTP_PORT", str(cls.smtp_port))),
            mail_from=env.get("NOTIFIER_MAIL_FROM", cls.mail_from),
            mail_to=env.get("NOTIFIER_MAIL_TO", cls.mail_to),
            dead_letter_topic=env.get("NOTIFIER_DEAD_LETTER_TOPIC", cls.dead_letter_topic),
        )


def smtp_sender(settings: Settings) -> Callable[[str, str], None]:
    def send(subject: str, body: str) -> None:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = settings.mail_from, settings.mail_to, subject
        mail.set_content(body)
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
            smtp.send_message(mail)

    return send


def build(settings: Settings, send: Callable[[str, str], None] | None = None) -> EventConsumer:
    send = send or smtp_sender(settings)
    consumer = EventConsumer(
        settings.bootstrap_servers, group_id=settings.group_id, dead_letter_topic=settings.dead_letter_topic
    )

    def footer(meta: EventMeta) -> str:
        return f"\n\nevent {meta.id} from {meta.source} at {meta.time.isoformat()}"

    @consumer.on(IntegrityCheckFailed)
    def integrity(event: IntegrityCheckFailed, meta: EventMeta) -> None:
        send(
            f"[Lawtrail R23-2] integrity check failed: recording {event.recording_id} ({event.unit})",
            f"Recording {event.recording_id} of unit {event.unit} failed its integrity check "
            f"({event.detected_by}): {event.detail}\nexpected SHA-256 {event.expected_sha256}" + footer(meta),
        )

    @consumer.on(FindingRaised)
    def serious_finding(event: FindingRaised, meta: EventMeta) -> None:
        finding = event.finding
        if finding.severity != SEVERITY_SERIOUS:
            return
        send(
            f"[Lawtrail {finding.article}] serious finding in {finding.unit}: {finding.code}",
            f"{finding.detail}\nofficer: {finding.officer or '-'}\nconsequence: {finding.consequence}\n"
            f"finding id: {finding.finding_id}" + footer(meta),
        )

    try:
        hold_class = event_class(LONG_TERM_HOLD)
    except LookupError as missing:
        log.warning("not watching long-term holds: %s", missing)
    else:

        @consumer.on(hold_class)
        def long_term_hold(event: object, meta: EventMeta) -> None:
            send(f"[Lawtrail R13] long-term hold placed ({meta.subject})", f"{event}" + footer(meta))

    return consumer


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in os.environ.get("NOTIFIER_DEBUG_LOGGERS", "").split(","):
        if name:
            logging.getLogger(name).setLevel(logging.DEBUG)
    settings = Settings.from_env()
    consumer = build(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop())
    log.info("notifier consuming %s as group %s", consumer.topics, settings.group_id)
    consumer.run()


if __name__ == "__main__":
    main()
