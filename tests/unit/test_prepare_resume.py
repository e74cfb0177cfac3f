"""Imports decoded by a process pool, and imports resumed after a SIGKILL, on CheXpert / RSNA
trees written by bench/scale_fixture.py from the packaged X-rays and pydicom's CT slice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from scale_fixtures import write_chexpert_tree, write_rsna_tree
from support import ROOT

from ml.data.formats import read_dataset
from ml.data.journal import JOURNAL, read_journal
from ml.data.prepare import PrepareResult, prepare_dataset
from ml.data.store import MANIFEST, open_dataset
from ml.progress import Stopped

SALT = "resume-salt"
N_IMAGES = 40  # two chunks of the pool's 32 files, so workers=2 really runs two processes


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chexpert_tree(tmp_path_factory.mktemp("chexpert"), N_IMAGES).root


@pytest.fixture(scope="module")
def rsna(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rsna_tree(tmp_path_factory.mktemp("rsna"), N_IMAGES).root


def _import(source: Path, fmt: str, out: Path, **kwargs: object) -> PrepareResult:
    return prepare_dataset(source, fmt, out, resolutions=(32, 64), salt=SALT, **kwargs)


def _store_bytes(out: Path) -> dict[str, bytes]:
    """The store's files (the manifest and every image array), the journal left out."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != JOURNAL}


def _jpegs(root: Path) -> list[Path]:
    report = read_dataset(root, "chexpert")
    return [r.path for r in report.records if r.path is not None]


@pytest.mark.parametrize("fmt", ["chexpert", "rsna"])
def test_pool_writes_the_store_the_serial_import_writes(
    fmt: str, chexpert: Path, rsna: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    shutil.copytree(chexpert if fmt == "chexpert" else rsna, source)
    # One file that fails in the middle: its report line must come out in the same place.
    broken = sorted(source.rglob("*.jpg" if fmt == "chexpert" else "*.dcm"))[N_IMAGES // 2]
    broken.write_bytes(broken.read_bytes()[:300])
    serial = _import(source, fmt, tmp_path / "serial", workers=1)
    pooled = _import(source, fmt, tmp_path / "pooled", workers=2)
    assert serial.n_failed == pooled.n_failed == 1
    assert serial.info.n_images == N_IMAGES - 1
    assert pooled.errors == serial.errors
    assert pooled.info == serial.info
    assert _store_bytes(tmp_path / "pooled") == _store_bytes(tmp_path / "serial")
    # Patient-level splits hold for the pooled store too.
    entries = open_dataset(tmp_path / "pooled").entries
    split_of: dict[str, set[str]] = {}
    for entry in entries:
        split_of.setdefault(entry.patient_key, set()).add(entry.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert len(split_of) > 1 and len({e.split for e in entries}) == 3


_CHILD = """
import sys, time
from pathlib import Path
from ml.data.prepare import prepare_dataset

halt_at = int(sys.argv[3])

def progress(done, total, message):
    print(int(done), flush=True)
    if done == halt_at:
        time.sleep(600)  # the test SIGKILLs us here

prepare_dataset(
    Path(sys.argv[1]), "chexpert", Path(sys.argv[2]), resolutions=(32, 64),
    salt="resume-salt", resume=True, commit_every=4, workers=int(sys.argv[4]),
    progress=progress,
)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_an_import_killed_midway_resumes_without_decoding_finished_files(
    workers: int, chexpert: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    shutil.copytree(chexpert, source)
    reference = _import(source, "chexpert", tmp_path / "reference")
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(source), str(out), "20", str(workers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.strip() == "20":
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not (out / MANIFEST).exists()
    records = read_dataset(source, "chexpert").records
    done = _journal(out)
    # Committed every 4 images; the kill came while image 20's progress was reported.
    assert done == 16
    # Replace the finished files by junk of the same size and time: were any decoded again,
    # it would fail and the store would differ.
    for record in records[:done]:
        assert record.path is not None
        stat = record.path.stat()
        record.path.write_bytes(b"\0" * stat.st_size)
        os.utime(record.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = _import(source, "chexpert", out, resume=True, workers=workers)
    assert (resumed.n_resumed, resumed.n_decoded) == (done, N_IMAGES - done)
    assert resumed.n_failed == 0
    assert resumed.info == reference.info
    assert resumed.errors == reference.errors
    assert resumed.summary == reference.summary
    assert _store_bytes(out) == _store_bytes(tmp_path / "reference")
    assert open_dataset(out).verify()


def _journal(out: Path) -> int:
    head = json.loads((out / JOURNAL).read_text().splitlines()[0])
    done = read_journal(out / JOURNAL, head["fingerprint"])
    assert done is not None
    return done.n


def test_resuming_a_finished_import_decodes_nothing(chexpert: Path, tmp_path: Path) -> None:
    first = _import(chexpert, "chexpert", tmp_path / "out", resume=True)
    again = _import(chexpert, "chexpert", tmp_path / "out", resume=True)
    assert (again.n_resumed, again.n_decoded) == (N_IMAGES, 0)
    assert (first.info, first.errors, first.summary) == (again.info, again.errors, again.summary)
    # Without resume a finished dataset is never written over.
    with pytest.raises(FileExistsError):
        _import(chexpert, "chexpert", tmp_path / "out")


def test_a_changed_source_file_restarts_the_import(chexpert: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(chexpert, source)
    out = tmp_path / "out"
    _import(source, "chexpert", out, resume=True)
    (out / MANIFEST).unlink()  # as if killed between the last row and the manifest
    first = _jpegs(source)[0]
    first.write_bytes(_jpegs(source)[1].read_bytes())
    redone = _import(source, "chexpert", out, resume=True)
    assert (redone.n_resumed, redone.n_decoded) == (0, N_IMAGES)
    fresh = _import(source, "chexpert", tmp_path / "fresh")
    assert _store_bytes(out) == _store_bytes(tmp_path / "fresh")
    assert redone.info == fresh.info


def test_a_torn_journal_line_is_dropped_and_redone(chexpert: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    complete = _import(chexpert, "chexpert", out, commit_every=1)
    (out / MANIFEST).unlink()
    lines = (out / JOURNAL).read_text().splitlines(keepends=True)
    # Header + 30 whole lines, then half of the 31st: a kill in the middle of a write.
    (out / JOURNAL).write_text("".join(lines[:31]) + lines[31][: len(lines[31]) // 2])
    resumed = _import(chexpert, "chexpert", out, resume=True)
    assert (resumed.n_resumed, resumed.n_decoded) == (30, N_IMAGES - 30)
    assert resumed.info == complete.info


def test_a_stopped_import_resumes_and_a_damaged_one_restarts(
    chexpert: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("not the importer's")
    reference = _import(chexpert, "chexpert", tmp_path / "reference")
    seen: list[float] = []

    def stop_after(n: int) -> Callable[[], bool]:
        seen.clear()
        return lambda: len(seen) >= n

    with pytest.raises(Stopped):
        _import(chexpert, "chexpert", out, resume=True, commit_every=4,
                progress=lambda d, t, m: seen.append(d), should_stop=stop_after(10))  # fmt: skip
    resumed = _import(chexpert, "chexpert", out, resume=True)
    assert (resumed.n_resumed, resumed.n_decoded) == (10, N_IMAGES - 10)
    assert resumed.info == reference.info

    (out / MANIFEST).unlink()  # killed after the last row, before the manifest
    finished = _import(chexpert, "chexpert", out, resume=True)
    assert (finished.n_resumed, finished.n_decoded) == (N_IMAGES, 0)
    assert finished.info == reference.info

    (out / MANIFEST).unlink()
    (out / "images_64.u8").unlink()  # rows the journal lists are gone: start again
    redone = _import(chexpert, "chexpert", out, resume=True)
    assert (redone.n_resumed, redone.n_decoded) == (0, N_IMAGES)
    assert redone.info == reference.info
    assert (out / "notes.txt").read_text() == "not the importer's"


def test_dicom_headers_read_by_a_pool_list_the_same_dataset(
    rsna: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml.data.formats import dicom_csv

    source = tmp_path / "source"
    shutil.copytree(rsna, source)
    broken = sorted((source / "stage_2_train").glob("*.dcm"))[7]
    broken.write_bytes(b"DICM" + broken.read_bytes()[:200])  # no preamble, cut: pydicom fails
    serial = read_dataset(source, "rsna", workers=1)
    monkeypatch.setattr(dicom_csv, "_POOL_FROM", 8)  # 40 files: a pool of chunks of 8
    monkeypatch.setattr(dicom_csv, "_POOL_CHUNK", 8)
    pooled = read_dataset(source, "rsna", workers=2)
    assert pooled.records == serial.records
    assert pooled.errors == serial.errors
    assert len(serial.records) == N_IMAGES - 1 and "not a readable DICOM file" in serial.errors[0]
