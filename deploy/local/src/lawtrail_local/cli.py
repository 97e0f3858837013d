"""`python -m lawtrail_local up|down|status|logs|scenario`: the local stack on its default ports.

`make up`/`make down`/`make logs` call this. Runtime data, logs and pid files live in the checkout's
git-ignored `.lawtrail/`, so `down`, `status` and `logs` work from any later process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lawtrail_local.errors import StackError
from lawtrail_local.layout import DEFAULT_DATA_DIR
from lawtrail_local.ports import is_listening
from lawtrail_local.process import tail_lines
from lawtrail_local.progress import stderr_progress
from lawtrail_local.services import SERVICES, ServiceProcess, health_status
from lawtrail_local.stack import Stack

#: What `down --purge` removes: only what the launcher itself creates in the data directory.
_PURGED = ("kafka", "ferretdb", "postgres", "data", "logs", "run")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one message on stderr and exit code 1, not a traceback."""
    args = _parser().parse_args(argv)
    data_dir: Path = args.data_dir.resolve()
    try:
        result: int = args.command(args, data_dir)
    except StackError as exc:
        stderr_progress(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lawtrail_local", description=__doc__)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="runtime data, logs, pid files (%(default)s)"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start Kafka, FerretDB and the services; return when all are ready")
    up.add_argument("--no-services", action="store_true", help="only Kafka and FerretDB")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds each part may take to get ready")
    up.set_defaults(command=_up)

    down = commands.add_parser("down", help="stop what `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the topics, databases and logs")
    down.set_defaults(command=_down)

    status = commands.add_parser("status", help="what runs (exit code 1 unless Kafka and FerretDB run)")
    status.set_defaults(command=_status)

    logs = commands.add_parser("logs", help="print the logs, then follow them until Ctrl-C")
    logs.add_argument("names", nargs="*", help="only these (kafka, ferretdb, case-svc, ...)")
    logs.add_argument("-n", "--lines", type=int, default=30, help="lines of history per log (%(default)s)")
    logs.add_argument("--no-follow", action="store_true", help="print and exit")
    logs.set_defaults(command=_logs)

    scenario = commands.add_parser("scenario", help="a short guided tour of the running stack")
    scenario.set_defaults(command=_scenario)

    run = commands.add_parser(
        "run", help="up, the guided scenario, logs until Ctrl-C, then down (`make run`)"
    )
    run.add_argument("--timeout", type=float, default=120.0, help="seconds each part may take to get ready")
    run.set_defaults(command=_run, no_services=False, names=[], lines=10, no_follow=False, purge=False)
    return parser


def _run(args: argparse.Namespace, data_dir: Path) -> int:
    """`make run`: one process owns the whole session, so Ctrl-C (or a failed step) always stops the stack."""
    try:
        _up(args, data_dir)
        if _scenario(args, data_dir) != 0:
            return 1
        return _logs(args, data_dir)  # follows until Ctrl-C
    finally:
        stderr_progress("stopping the local stack…")
        _down(args, data_dir)


def _scenario(args: argparse.Namespace, data_dir: Path) -> int:
    from lawtrail_local.scenario import run  # needs the services' client; up/down do not

    return run(data_dir)


def _services(stack: Stack) -> list[ServiceProcess]:
    return [stack.service(spec) for spec in SERVICES]


def _up(args: argparse.Namespace, data_dir: Path) -> int:
    began = time.monotonic()
    stack = Stack(data_dir, ready_timeout=args.timeout)
    stack.start()
    if not args.no_services:
        _start_services(stack, args.timeout)
    stderr_progress(
        f"local stack ready in {time.monotonic() - began:.1f} s (`python -m lawtrail_local down` stops it)"
    )
    print(f"LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS={stack.kafka_bootstrap}")
    print(f"LAWTRAIL_MONGO_URI={stack.mongo_uri}")
    return 0


def _start_services(stack: Stack, timeout: float) -> None:
    """Start every available service, then wait for all; on failure stop the ones started here."""
    started: list[ServiceProcess] = []
    try:
        for service in _services(stack):
            reason = service.spec.unavailable_reason()
            if reason:
                stderr_progress(f"skipping {service.name}: {reason}")
            elif service.process.adopt():
                stderr_progress(f"{service.name} already running (pid {service.process.pid})")
            else:
                stderr_progress(f"starting {service.name} on {service.grpc_address}…")
                service.start()
                started.append(service)
        for service in started:
            elapsed = service.wait_ready(timeout)
            stderr_progress(f"{service.name} ready in {elapsed:.1f} s (gRPC {service.grpc_address})")
    except BaseException:
        for service in reversed(started):
            service.stop()
        stderr_progress("Kafka and FerretDB keep running: `python -m lawtrail_local down` stops them")
        raise


def _down(args: argparse.Namespace, data_dir: Path) -> int:
    stack = Stack(data_dir)
    running = [s.process for s in _services(stack) if s.process.adopt(drop_foreign=True)]
    # Infrastructure in reverse start order: FerretDB before the PostgreSQL under it, Kafka last.
    running += [p for p in reversed(stack.processes) if p.adopt(drop_foreign=True)]
    if not running:
        stderr_progress(f"nothing running from {data_dir}")
    for process in running:  # services first: they still flush to Kafka and FerretDB while stopping
        began = time.monotonic()
        process.stop()
        stderr_progress(f"stopped {process.name} in {time.monotonic() - began:.1f} s")
    if args.purge:
        for name in _PURGED:
            shutil.rmtree(data_dir / name, ignore_errors=True)
        stderr_progress(f"removed the local data in {data_dir}")
    return 0


def _status(args: argparse.Namespace, data_dir: Path) -> int:
    stack = Stack(data_dir)
    infra = [
        ("kafka", stack.kafka.process, stack.kafka_bootstrap, stack.kafka.port),
        ("ferretdb", stack.ferretdb.process, stack.mongo_uri, stack.ferretdb.port),
    ]
    for name, process, address, port in infra:
        if process.adopt():
            state = "listening" if is_listening(port) else "starting"
            print(f"{name:<10} running  pid {process.pid:<8} {address} ({state})")
        else:
            print(f"{name:<10} stopped")
    for service in _services(stack):
        if service.process.adopt():
            health = health_status(service.grpc_address) or "no health answer"
            print(
                f"{service.name:<10} running  pid {service.process.pid:<8} {service.grpc_address} ({health})"
            )
        else:
            reason = service.spec.unavailable_reason()
            print(f"{service.name:<10} stopped" + (f" ({reason})" if reason else ""))
    return 0 if all(process.running for _, process, _, _ in infra) else 1


def _logs(args: argparse.Namespace, data_dir: Path) -> int:
    logs_dir = data_dir / "logs"

    def matching() -> list[Path]:
        files = sorted(logs_dir.glob("*.log"))
        return [f for f in files if not args.names or any(f.name.startswith(f"{n}.") for n in args.names)]

    files = matching()
    if not files and args.no_follow:
        stderr_progress(f"no logs in {logs_dir}" + (f" for {', '.join(args.names)}" if args.names else ""))
        return 1
    offsets: dict[Path, int] = {}
    for path in files:
        for line in tail_lines(path, args.lines):
            print(f"{path.stem} | {line}")
        offsets[path] = path.stat().st_size
    sys.stdout.flush()
    if args.no_follow:
        return 0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends following (`make run` then stops the stack)
        _follow(matching, offsets)
    return 0


def _follow(matching: Callable[[], list[Path]], offsets: dict[Path, int]) -> None:
    """Print lines appended to the logs, picking up logs created later (a service started later)."""
    partial: dict[Path, bytes] = {}
    while True:
        for path in matching():
            offset = offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    if os.fstat(f.fileno()).st_size < offset:  # rolled over or purged: a new file
                        offset = 0
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                continue
            offsets[path] = offset + len(chunk)
            *lines, rest = (partial.pop(path, b"") + chunk).split(b"\n")
            if rest:
                partial[path] = rest
            for line in lines:
                print(f"{path.stem} | {line.decode('utf-8', 'replace')}")
        sys.stdout.flush()
        time.sleep(0.5)
