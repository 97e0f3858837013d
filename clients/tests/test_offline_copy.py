"""R13 offline copies: the format retention-svc writes and `lawtrail verify-copy` re-reads offline —
an intact copy verifies (ISO image and folder), any changed, missing or extra file is reported."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pycdlib
import pytest
from lawtrail_client import cli
from lawtrail_client import offline_copy as oc


def _staging(root: Path, sizes: tuple[int, ...] = (3_000_000, 5)) -> tuple[Path, str]:
    staging = root / "staging"
    (staging / oc.RECORDINGS).mkdir(parents=True)
    items = []
    for n, size in enumerate(sizes):
        data = os.urandom(size)
        name = f"rec-{n}.mp4"
        (staging / oc.RECORDINGS / name).write_bytes(data)
        items.append(
            oc.ManifestItem(
                f"rec-{n}", f"{oc.RECORDINGS}/{name}", hashlib.sha256(data).hexdigest(), size, {"unit": "u"}
            )
        )
    manifest = oc.manifest_bytes(
        copy_id="copy-1",
        case_id="case-1",
        unit="u",
        created_at="2026-11-29T00:00:00+00:00",
        created_by="t",
        items=items,
    )
    return staging, oc.finish_staging(staging, manifest, items)


def test_r13_an_iso_copy_verifies_and_its_root_hash_is_the_manifest_hash(tmp_path: Path) -> None:
    staging, root_hash = _staging(tmp_path)
    seen: list[int] = []
    image = oc.write_iso(staging, tmp_path / "out" / "copy-1.iso", "case-1", lambda d, t, w: seen.append(d))
    assert not staging.exists()
    assert seen
    report = oc.verify(image)
    assert report.ok, report.problems
    assert (report.root_hash, report.files_checked, report.copy_id) == (root_hash, 2, "copy-1")


def test_r13_a_folder_copy_passes_sha256sum_c(tmp_path: Path) -> None:
    staging, root_hash = _staging(tmp_path)
    folder = oc.write_folder(staging, tmp_path / "usb" / "copy-1")
    check = subprocess.run(
        ["sha256sum", "-c", oc.SUMS], cwd=folder, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 3
    assert oc.verify(folder).root_hash == root_hash


def test_r13_verify_reports_a_changed_a_missing_and_an_extra_file(tmp_path: Path) -> None:
    staging, _ = _staging(tmp_path)
    folder = oc.write_folder(staging, tmp_path / "copy")
    target = folder / oc.RECORDINGS / "rec-0.mp4"
    data = bytearray(target.read_bytes())
    data[1000] ^= 1
    target.write_bytes(bytes(data))
    (folder / oc.RECORDINGS / "rec-1.mp4").unlink()
    (folder / oc.RECORDINGS / "intruder.mp4").write_bytes(b"x")
    problems = oc.verify(folder).problems
    assert any("rec-0.mp4: SHA-256" in p for p in problems), problems
    assert any("rec-1.mp4: missing" in p for p in problems), problems
    assert any("intruder.mp4: on the copy but not in the manifest" in p for p in problems), problems


def test_r13_verify_detects_a_changed_byte_inside_an_iso_image(tmp_path: Path) -> None:
    staging, _ = _staging(tmp_path, sizes=(200_000,))
    image = oc.write_iso(staging, tmp_path / "copy.iso", "case-1")
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    record = iso.get_record(rr_path="/recordings/rec-0.mp4")
    offset = record.fp_offset if hasattr(record, "fp_offset") else record.extent_location() * 2048
    iso.close()
    with image.open("r+b") as f:
        f.seek(offset + 100)
        byte = f.read(1)
        f.seek(offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert any("SHA-256" in p for p in oc.verify(image).problems)


def test_verify_copy_command_exit_status_and_root_hash_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging, root_hash = _staging(tmp_path)
    image = oc.write_iso(staging, tmp_path / "copy.iso", "case-1")
    assert cli.main(["verify-copy", str(image), "--root-hash", root_hash]) == 0
    out = capsys.readouterr()
    assert f"root hash (SHA-256 of manifest.json): {root_hash}" in out.out
    assert "OK: every hash matches" in out.out
    assert "verifying: 100%" in out.err
    assert cli.main(["verify-copy", str(image), "--root-hash", "0" * 64, "--quiet"]) == 1
    assert "the inventory says" in capsys.readouterr().out
    assert cli.main(["verify-copy", str(tmp_path / "nothing.iso")]) == 2
