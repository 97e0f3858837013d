"""`lawtrail` — the command line of Lawtrail.

    lawtrail station collect-once <folder> [--server HOST:PORT] [--token JWT | --token-file F]
    lawtrail station watch <folder> [--interval 10] …
    lawtrail devices register|check|maintenance|fault|repair|get|list …
    lawtrail verify-copy PATH [--root-hash HEX]      (an offline copy: .iso image or folder; offline)
    lawtrail verify <file>… --public-key access-svc-public.pem     (offline: no service needed)
    lawtrail disclosure package <request id> -o package.zip --retained-copy "…"  (R14, R15)
    lawtrail ledger checkpoint|export-entry|export-consistency …    (access-svc, LEGAL_OFFICE / INSPECTOR)
    lawtrail dev-token --subject alice --unit unit-a --roles OFFICER      (local development only)

The token comes from `--token`, `--token-file` or the environment variable `LAWTRAIL_TOKEN`; the media
server from `--server` or `LAWTRAIL_MEDIA_SERVER` (default 127.0.0.1:50052).
Exit status: 0 = done, 1 = some files or calls failed (see the messages), 2 = usage or configuration error.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
import uuid
import zipfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import device_service_pb2 as dev

from lawtrail_client.channel import Tls
from lawtrail_client.client import DEFAULT_ACCESS_TARGET, DEFAULT_MEDIA_TARGET, AccessClient, MediaClient
from lawtrail_client.errors import LawtrailError
from lawtrail_client.station.agent import StationAgent, StationConfig, StationStopped
from lawtrail_client.station.journal import JournalLocked
from lawtrail_client.station.metadata import __doc__ as NAMING_DOC
from lawtrail_client.verify import CONSISTENCY_FORMAT, ENTRY_FORMAT, VerificationError, load_json, load_keys
from lawtrail_client.verify import __doc__ as verify_doc

EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["dev-token"]:
        return _dev_token(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except ConfigError as error:
        print(f"lawtrail: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LawtrailError as error:
        print(f"lawtrail: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            "lawtrail: interrupted; nothing partial is marked collected — run again to resume",
            file=sys.stderr,
        )
        return 130


class ConfigError(Exception):
    pass


# --- parser ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lawtrail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and connection details")
    sub = parser.add_subparsers(title="commands")
    sub.add_parser(
        "dev-token", help="mint a local development token (lawtrail-dev-token; needs the workspace)"
    )

    station = sub.add_parser(
        "station",
        help="collection-station agent: upload docked cameras' files from a folder",
        description="Collection-station agent.\n\n" + (NAMING_DOC or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    station_sub = station.add_subparsers(title="station commands")
    for name, help_text in (
        ("collect-once", "collect what is in the folder now, then exit"),
        ("watch", "collect continuously until Ctrl-C / SIGTERM"),
    ):
        p = station_sub.add_parser(name, help=help_text)
        p.add_argument("folder", type=Path, help="folder the dock writes files into")
        _connection_options(p)
        p.add_argument(
            "--unit", default="", help="unit for files whose sidecar names none (default: the token's unit)"
        )
        p.add_argument(
            "--settle", type=float, default=2.0, help="seconds a file must be unchanged (default 2)"
        )
        p.add_argument(
            "--max-rate", type=_rate, default=None, help="upload rate limit, e.g. 5M or 500K bytes/s"
        )
        p.add_argument(
            "--retry-failed", action="store_true", help="try refused files again even if unchanged"
        )
        if name == "watch":
            p.add_argument("--interval", type=float, default=10.0, help="seconds between passes (default 10)")
            p.set_defaults(run=_station_watch)
        else:
            p.set_defaults(run=_station_collect_once)

    verify = sub.add_parser(
        "verify-copy",
        help="re-read an offline copy (R13: .iso image or removable-media folder) and check every hash",
        description=(
            "Re-reads an offline copy made by retention-svc, without any server: every recording's\n"
            "SHA-256 and size against manifest.json, and manifest.json against SHA256SUMS. Prints the root\n"
            "hash (SHA-256 of manifest.json) to compare with the inventory, or checks it with --root-hash.\n"
            "Exit status: 0 = the copy is intact, 1 = a problem was found (listed)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("path", type=Path, help="the .iso image or the copy's folder")
    verify.add_argument("--root-hash", default="", help="the root hash recorded in the inventory")
    verify.add_argument("--quiet", action="store_true", help="no progress lines")
    verify.set_defaults(run=_verify_copy)

    verify = sub.add_parser(
        "verify",
        help="offline: check exported ledger entries or checkpoint pairs against access-svc's public key",
        description=(verify_doc or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "files", type=Path, nargs="+", help="lawtrail-ledger-entry/1 or lawtrail-consistency/1 JSON"
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        required=True,
        help="access-svc's published Ed25519 public key (PEM); repeat for rotated keys",
    )
    verify.set_defaults(run=_verify)

    disclosure = sub.add_parser(
        "disclosure", help="disclosures to a reconsideration body or court (R14, R15)"
    )
    disclosure_sub = disclosure.add_subparsers(title="disclosure commands")
    p = disclosure_sub.add_parser(
        "package", help="build the package of an approved disclosure (zip) and record it in access-svc"
    )
    p.add_argument("request_id", help="the approved disclosure request (yours)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the package file to write (.zip)")
    p.add_argument("--retained-copy", required=True, help="where the retained copy (复制留存) is kept")
    p.add_argument(
        "--media-server",
        default=os.environ.get("LAWTRAIL_MEDIA_SERVER", DEFAULT_MEDIA_TARGET),
        help="media-svc host:port",
    )
    _access_options(p)
    p.set_defaults(run=_disclosure_package)

    ledger = sub.add_parser("ledger", help="export ledger entries and checkpoints from access-svc (online)")
    ledger_sub = ledger.add_subparsers(title="ledger commands")
    p = ledger_sub.add_parser("checkpoint", help="the latest signed checkpoint (JSON)")
    p.add_argument("--sign", action="store_true", help="sign a new checkpoint first (LEGAL_OFFICE)")
    p.add_argument("-o", "--output", type=Path, default=None, help="write to this file (default: stdout)")
    _access_options(p)
    p.set_defaults(run=_ledger_checkpoint)
    p = ledger_sub.add_parser("export-entry", help="an entry with its inclusion proof and signed checkpoint")
    p.add_argument("--index", type=int, default=None, help="leaf index")
    p.add_argument("--source", default="", help="the event's ce_source (with --id)")
    p.add_argument("--id", default="", help="the event's ce_id")
    p.add_argument("-o", "--output", type=Path, default=None, help="write to this file (default: stdout)")
    _access_options(p)
    p.set_defaults(run=_ledger_export_entry)
    p = ledger_sub.add_parser(
        "export-consistency", help="the proof that the latest checkpoint extends an earlier one"
    )
    p.add_argument("first", type=Path, help="the earlier checkpoint (JSON, or an exported entry holding one)")
    p.add_argument("-o", "--output", type=Path, default=None, help="write to this file (default: stdout)")
    _access_options(p)
    p.set_defaults(run=_ledger_export_consistency)

    devices = sub.add_parser(
        "devices", help="recording devices: register, pre-use check, faults, repairs (R20, R21)"
    )
    devices_sub = devices.add_subparsers(title="device commands")
    p = devices_sub.add_parser("register", help="register a device in your unit")
    p.add_argument("device_number")
    p.add_argument("--model", required=True)
    p.add_argument("--unit", default="", help="default: your unit")
    p.set_defaults(run=_devices_register)
    p = devices_sub.add_parser("check", help="record a pre-use check before a shift (R20)")
    p.add_argument("device_number")
    p.add_argument("--battery", type=int, required=True, help="battery charge in percent")
    p.add_argument("--free-mib", type=int, required=True, help="free storage in MiB")
    p.add_argument(
        "--clock-offset", type=float, default=0.0, help="device clock minus reference clock, seconds"
    )
    p.set_defaults(run=_devices_check)
    p = devices_sub.add_parser("maintenance", help="add a maintenance log entry (R20)")
    p.add_argument("device_number")
    p.add_argument("description")
    p.set_defaults(run=_devices_maintenance)
    p = devices_sub.add_parser("fault", help="report a fault: out of service at once (R21)")
    p.add_argument("device_number")
    p.add_argument("description")
    p.set_defaults(run=_devices_fault)
    p = devices_sub.add_parser("repair", help="record the repair: back in service (R21)")
    p.add_argument("device_number")
    p.add_argument("note")
    p.set_defaults(run=_devices_repair)
    p = devices_sub.add_parser("get", help="show a device")
    p.add_argument("device_number")
    p.set_defaults(run=_devices_get)
    p = devices_sub.add_parser("list", help="list a unit's devices")
    p.add_argument("--unit", default="", help="default: your unit")
    p.set_defaults(run=_devices_list)
    for command in devices_sub.choices.values():
        _connection_options(command)

    p = sub.add_parser(
        "report", help="monthly compliance report of a unit: PDF + HTML with charts, numbers as CSV"
    )
    p.add_argument("--unit", required=True, help="the unit")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default ./reports)")
    p.add_argument(
        "--compliance-server",
        default=os.environ.get("LAWTRAIL_COMPLIANCE_SERVER", "127.0.0.1:50055"),
        help="compliance-svc host:port",
    )
    _connection_options(p)
    p.set_defaults(run=_report)
    return parser


def _report(args: argparse.Namespace) -> int:
    from lawtrail_client.client import ComplianceClient
    from lawtrail_client.report import collect, month_bounds, render

    try:
        month_bounds(args.month)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    media, token = _media(args)
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if (args.tls_ca or args.tls_cert) else None
    with (
        media,
        ComplianceClient.connect(
            args.compliance_server, token=token, tls=tls, timeout_s=args.timeout
        ) as compliance,
    ):
        paths = render(collect(compliance, media, args.unit, args.month), args.out)
    for kind, path in paths.items():
        print(f"{kind}\t{path}")
    return 0


def _access_options(p: argparse.ArgumentParser) -> None:
    _connection_options(p)
    p.set_defaults(server=os.environ.get("LAWTRAIL_ACCESS_SERVER", DEFAULT_ACCESS_TARGET))


def _connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        default=os.environ.get("LAWTRAIL_MEDIA_SERVER", DEFAULT_MEDIA_TARGET),
        help="media-svc host:port",
    )
    p.add_argument("--token", default=None, help="bearer token (default: $LAWTRAIL_TOKEN)")
    p.add_argument("--token-file", type=Path, default=None, help="file holding the bearer token")
    p.add_argument("--tls-ca", type=Path, default=None, help="CA certificate (PEM); enables TLS")
    p.add_argument("--tls-cert", type=Path, default=None, help="client certificate (PEM) for mTLS")
    p.add_argument("--tls-key", type=Path, default=None, help="client key (PEM) for mTLS")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="deadline of each call in seconds (default 10)"
    )


def _rate(text: str) -> float:
    factors = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("/S").removesuffix("B")
    try:
        if text and text[-1] in factors:
            return float(text[:-1]) * factors[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (examples: 500K, 5M, 1000000)") from None


# --- connection -----------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token).strip()
    if args.token_file:
        try:
            return str(args.token_file.read_text()).strip()
        except OSError as error:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {error}") from None
    token = os.environ.get("LAWTRAIL_TOKEN", "").strip()
    if not token:
        raise ConfigError(
            "no token: pass --token, --token-file or set LAWTRAIL_TOKEN (locally: lawtrail dev-token …)"
        )
    return token


def token_claims(token: str) -> dict[str, object]:
    """The token's claims, NOT verified (only to fill defaults such as the unit; the server verifies)."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _media(args: argparse.Namespace) -> tuple[MediaClient, str]:
    token = _token(args)
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if (args.tls_ca or args.tls_cert) else None
    return MediaClient.connect(args.server, token=token, tls=tls, timeout_s=args.timeout), token


# --- station --------------------------------------------------------------------------------------


def _agent(args: argparse.Namespace) -> tuple[StationAgent, MediaClient]:
    folder: Path = args.folder
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    media, token = _media(args)
    unit = args.unit or str(token_claims(token).get("unit") or "")
    config = StationConfig(
        folder=folder, unit=unit, settle_s=args.settle, max_rate=args.max_rate, retry_failed=args.retry_failed
    )
    return StationAgent(media, config, out=sys.stderr), media


def _station_collect_once(args: argparse.Namespace) -> int:
    agent, media = _agent(args)
    with media:
        try:
            outcomes = agent.collect_once()
        except (StationStopped, JournalLocked) as error:
            raise ConfigError(str(error)) from None
    collected = sum(o.status == "collected" for o in outcomes)
    problems = [o for o in outcomes if o.media and o.status != "collected"]
    ignored = [o for o in outcomes if not o.media]
    print(f"{collected} collected, {len(problems)} not collected", file=sys.stderr)
    for o in problems:
        print(f"  {o.name}: {o.status}: {o.detail}", file=sys.stderr)
    if ignored:
        print(f"{len(ignored)} ignored (not media files):", file=sys.stderr)
        for o in ignored:
            print(f"  {o.name}: {o.detail}", file=sys.stderr)
    # 0 only when every media file present was collected: a file still settling is not "done".
    return 0 if agent.complete(outcomes) else EXIT_FAILED


def _station_watch(args: argparse.Namespace) -> int:
    agent, media = _agent(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> NoReturn:
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    with media:
        try:
            agent.watch(args.interval, stop)
        except (StationStopped, JournalLocked) as error:
            raise ConfigError(str(error)) from None
    return 0


# --- devices --------------------------------------------------------------------------------------


def _verify_copy(args: argparse.Namespace) -> int:
    # Imported here: pycdlib is needed by this command only.
    from lawtrail_client.offline_copy import verify

    path: Path = args.path
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    last = [-1]

    def progress(done: int, total: int, what: str) -> None:
        percent = 100 * done // total if total else 100
        if not args.quiet and percent != last[0] and (percent % 5 == 0 or done == total):
            last[0] = percent
            print(f"{what}: {percent:3d}% ({done:,} of {total:,} bytes)", file=sys.stderr)

    try:
        report = verify(path, progress)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if args.root_hash and args.root_hash.lower() != report.root_hash:
        report.problems.append(f"root hash {report.root_hash}, the inventory says {args.root_hash.lower()}")
    print(f"copy {report.copy_id or '?'} of case {report.case_id or '?'}: {path}")
    print(f"root hash (SHA-256 of manifest.json): {report.root_hash or '-'}")
    print(f"checked {report.files_checked} recordings, {report.bytes_checked:,} bytes")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if report.ok:
        print("OK: every hash matches")
        return 0
    if not report.problems:
        print("PROBLEM: the copy holds no recording")
    return EXIT_FAILED


# --- verify / ledger -----------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    """Checks each file; prints one line per file; exit 1 if any failed."""
    from lawtrail.access.v1 import ledger_service_pb2 as lpb

    from lawtrail_client import verify as v

    try:
        keys = load_keys(args.public_key)
    except VerificationError as error:
        raise ConfigError(str(error)) from None
    failed = 0
    for path in args.files:
        try:
            doc: Any = None
            kind: Any = "zip"
            if not zipfile.is_zipfile(path):
                doc = load_json(path)
                kind = doc.get("format") if isinstance(doc, dict) else None
            if kind == ENTRY_FORMAT:
                report = v.verify_entry(doc, keys)
                leaf = lpb.LedgerLeaf.FromString(report.leaf)
                print(
                    f"OK {path}: entry {report.leaf_index} of {report.tree_size} (checkpoint signed by "
                    f"{report.checkpoint.key_id}) is {leaf.ce_type} {leaf.ce_id} about {leaf.ce_subject!r} "
                    f"from {leaf.ce_source} on {leaf.topic}"
                )
            elif kind == "zip":
                pkg = v.verify_package(path, keys)
                print(
                    f"OK {path}: disclosure {pkg.request_id} to {pkg.recipient!r}: {pkg.files} file(s) match "
                    f"the manifest and the ledger; approved by {', '.join(pkg.approvers)}; "
                    f"{pkg.entries} ledger entries proven against a checkpoint of {pkg.tree_size}"
                )
            elif kind == CONSISTENCY_FORMAT:
                first, second = v.verify_consistency_pair(doc, keys)
                print(
                    f"OK {path}: the ledger at {second.tree_size} entries extends the one at "
                    f"{first.tree_size}"
                )
            else:
                raise VerificationError(
                    f"unknown format {kind!r} (expected {ENTRY_FORMAT} or {CONSISTENCY_FORMAT})"
                )
        except VerificationError as error:
            failed += 1
            print(f"FAILED {path}: {error}")
    return EXIT_FAILED if failed else 0


def _access(args: argparse.Namespace) -> AccessClient:
    token = _token(args)
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if (args.tls_ca or args.tls_cert) else None
    return AccessClient.connect(args.server, token=token, tls=tls, timeout_s=args.timeout)


def _checkpoint_json(cp: Any) -> dict[str, Any]:
    from lawtrail_client.verify import Checkpoint

    ms = cp.signed_at.seconds * 1000 + cp.signed_at.nanos // 1_000_000
    return Checkpoint(cp.origin, cp.tree_size, cp.root_hash, ms, cp.key_id, cp.signature).to_json()


def _write(doc: dict[str, Any], output: Path | None) -> int:
    text = json.dumps(doc, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        print(f"wrote {output}", file=sys.stderr)
    return 0


def _disclosure_package(args: argparse.Namespace) -> int:
    from lawtrail_client.disclosure import PackageError, build_package

    token = _token(args)
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if (args.tls_ca or args.tls_cert) else None
    with (
        AccessClient.connect(args.server, token=token, tls=tls, timeout_s=args.timeout) as access,
        MediaClient.connect(
            args.media_server, token=token, tls=tls, timeout_s=max(args.timeout, 600)
        ) as media,
    ):
        try:
            build_package(
                access,
                media,
                args.request_id,
                args.output,
                retained_copy=args.retained_copy,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
        except PackageError as error:
            print(f"lawtrail: {error}", file=sys.stderr)
            return EXIT_FAILED
    return 0


def _ledger_checkpoint(args: argparse.Namespace) -> int:
    from lawtrail.access.v1 import ledger_service_pb2 as lpb

    with _access(args) as client:
        if args.sign:
            cp = client.ledger.SignCheckpoint(lpb.SignCheckpointRequest()).checkpoint
        else:
            cp = client.ledger.GetCheckpoint(lpb.GetCheckpointRequest()).checkpoint
    return _write(_checkpoint_json(cp), args.output)


def _ledger_export_entry(args: argparse.Namespace) -> int:
    from lawtrail.access.v1 import ledger_service_pb2 as lpb

    if (args.index is not None) == bool(args.source or args.id):
        raise ConfigError("name the entry by --index, or by --source and --id")
    with _access(args) as client:
        if args.index is not None:
            entry = client.ledger.GetLedgerEntry(lpb.GetLedgerEntryRequest(leaf_index=args.index))
        else:
            entry = client.ledger.GetLedgerEntry(
                lpb.GetLedgerEntryRequest(ce_source=args.source, ce_id=args.id)
            )
        cp = client.ledger.GetCheckpoint(lpb.GetCheckpointRequest()).checkpoint
        if cp.tree_size <= entry.leaf_index:
            cp = client.ledger.SignCheckpoint(lpb.SignCheckpointRequest()).checkpoint
        proof = client.ledger.GetInclusionProof(
            lpb.GetInclusionProofRequest(leaf_index=entry.leaf_index, tree_size=cp.tree_size)
        )
    return _write(
        {
            "format": ENTRY_FORMAT,
            "leaf_index": entry.leaf_index,
            "leaf": base64.b64encode(entry.leaf).decode(),
            "checkpoint": _checkpoint_json(cp),
            "inclusion_proof": [base64.b64encode(p).decode() for p in proof.proof],
        },
        args.output,
    )


def _ledger_export_consistency(args: argparse.Namespace) -> int:
    from lawtrail.access.v1 import ledger_service_pb2 as lpb

    earlier = load_json(args.first)
    first = earlier.get("checkpoint", earlier) if isinstance(earlier, dict) else None
    if not isinstance(first, dict) or "tree_size" not in first:
        raise ConfigError(f"{args.first} holds no checkpoint")
    with _access(args) as client:
        cp = client.ledger.GetCheckpoint(lpb.GetCheckpointRequest()).checkpoint
        proof = client.ledger.GetConsistencyProof(
            lpb.GetConsistencyProofRequest(first_size=int(first["tree_size"]), second_size=cp.tree_size)
        )
    return _write(
        {
            "format": CONSISTENCY_FORMAT,
            "first": first,
            "second": _checkpoint_json(cp),
            "consistency_proof": [base64.b64encode(p).decode() for p in proof.proof],
        },
        args.output,
    )


def _print(message: Message) -> int:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=1, ensure_ascii=False))
    return 0


def _devices_register(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    with media:
        request = dev.RegisterDeviceRequest(
            device_number=args.device_number, unit=args.unit, model=args.model
        )
        return _print(media.devices.RegisterDevice(request))


def _devices_check(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    offset = Duration()
    offset.FromTimedelta(timedelta(seconds=args.clock_offset))
    with media:
        response = media.devices.RecordPreUseCheck(
            dev.RecordPreUseCheckRequest(
                device_number=args.device_number,
                battery_percent=args.battery,
                free_storage_bytes=args.free_mib * 1024 * 1024,
                clock_offset=offset,
                request_id=uuid.uuid4().hex,
            )
        )
    _print(response)
    return 0 if response.check.passed else EXIT_FAILED


def _devices_maintenance(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    with media:
        request = dev.RecordMaintenanceRequest(
            device_number=args.device_number, description=args.description, request_id=uuid.uuid4().hex
        )
        return _print(media.devices.RecordMaintenance(request))


def _devices_fault(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    with media:
        request = dev.ReportFaultRequest(
            device_number=args.device_number, description=args.description, request_id=uuid.uuid4().hex
        )
        return _print(media.devices.ReportFault(request))


def _devices_repair(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    with media:
        request = dev.RecordRepairRequest(
            device_number=args.device_number, note=args.note, request_id=uuid.uuid4().hex
        )
        return _print(media.devices.RecordRepair(request))


def _devices_get(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    with media:
        return _print(media.devices.GetDevice(dev.GetDeviceRequest(device_number=args.device_number)))


def _devices_list(args: argparse.Namespace) -> int:
    media, _ = _media(args)
    token = ""
    with media:
        while True:
            page = media.devices.ListDevices(
                dev.ListDevicesRequest(
                    unit=args.unit, page=common_pb2.PageRequest(page_size=200, page_token=token)
                )
            )
            for device in page.devices:
                status = dev.DeviceStatus.Name(device.status).removeprefix("DEVICE_STATUS_")
                print(f"{device.device_number}\t{device.unit}\t{device.model}\t{status}")
            token = page.page.next_page_token
            if not token:
                return 0


# --- dev token ------------------------------------------------------------------------------------


def _dev_token(argv: list[str]) -> int:
    """Pass-through to servicekit's `lawtrail-dev-token` (present in the development workspace only)."""
    try:
        from servicekit.auth.devtoken import main as dev_token_main
    except ImportError:
        print(
            "lawtrail dev-token needs the Lawtrail development workspace (lawtrail-servicekit); "
            "production tokens come from your identity provider",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return int(dev_token_main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
