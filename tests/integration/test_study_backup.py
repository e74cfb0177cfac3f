"""``synthbench export`` / ``import``: a whole study round-trips exactly into another
installation (SQLite and PostgreSQL), and an archive that is damaged, tampered with, too large
or already imported is refused without writing a row or a file."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from study_fixtures import BuiltStudy, build_read_study
from support import Env, activate, make_user, run_cli

from app.db import Base, get_engine, get_sessionmaker, session_scope
from app.imagesets.storage import images_root
from app.models import ScheduleEntry, Study, StudyReader, User
from app.studies.backup import BackupError, ImportLimits, ImportReport, export_study, import_study
from app.studies.imports import import_ratings
from app.studies.ratings import answer_rows
from app.studies.results import statistics_for

# The references a manifest holds, by the list that defines each kind of id.
ID_FIELDS = {
    "image_sets": {"id": "image_sets"},
    "images": {"id": "images", "image_set_id": "image_sets"},
    "items": {"id": "items", "image_id": "images"},
    "readers": {"id": "readers"},
    "schedule": {"id": "schedule", "reader_id": "readers", "item_id": "items"},
    "answers": {"entry_id": "schedule", "reader_id": "readers"},
}


@dataclass(frozen=True)
class Source:
    env: Env
    built: BuiltStudy
    archive: Path
    results: dict[str, Any]


def _results(study_id: int) -> dict[str, Any]:
    """What the results page, stats.json and `synthbench study stats` show, and the CSV rows."""
    with session_scope() as db:
        study = db.get(Study, study_id)
        return {
            "wrong": statistics_for(db, study, "wrong")[1],
            "excluded": statistics_for(db, study, "excluded")[1],
            "rows": answer_rows(db, study),
        }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """One installation whose study was read, exported once for the whole module."""
    home = tmp_path_factory.mktemp("source")
    env = Env(home, f"sqlite:///{home / 'source.sqlite'}", f"sqla+sqlite:///{home / 'b.sqlite'}")
    with pytest.MonkeyPatch.context() as mp:
        activate(env, mp)
        built = build_read_study()
        archive = home / "study.zip"
        with get_sessionmaker()() as db:
            export_study(db, built.study_id, archive)
        yield Source(env, built, archive, _results(built.study_id))
        get_engine().dispose()


def _install(home: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Env:
    env = Env(home, url, f"sqla+sqlite:///{home / 'broker.sqlite'}")
    activate(env, monkeypatch)
    return env


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    """A second, empty installation: its own home (file store) and database."""
    url = (
        f"sqlite:///{tmp_path / 'target.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    yield _install(tmp_path, url, monkeypatch)
    get_engine().dispose()


def _manifest(archive: Path) -> dict[str, Any]:
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("manifest.json"))


def _blobs(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {n.removeprefix("files/"): zf.read(n) for n in zf.namelist() if n != "manifest.json"}


def normalised(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[int, int]]]:
    """The manifest with every database id replaced by its ordinal in the defining list, the
    time of export dropped; and the id maps used."""
    maps = {kind: {r["id"]: n for n, r in enumerate(manifest[kind], 1)} for kind in ID_FIELDS
            if kind != "answers"}  # fmt: skip
    out = {k: v for k, v in manifest.items() if k not in ("exported_at", *ID_FIELDS)}
    out["study"] = {**manifest["study"], "id": 0}
    for kind, fields in ID_FIELDS.items():
        out[kind] = [
            {k: maps[fields[k]][v] if k in fields else v for k, v in record.items()}
            for record in manifest[kind]
        ]
    return out, maps


def _relabel(results: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """Results with images renamed: they are labelled by study item id, new in a restore."""
    out = copy.deepcopy({k: results[k] for k in ("wrong", "excluded")})
    for stats in out.values():
        stats["fooling_rates"] = {images[k]: v for k, v in stats["fooling_rates"].items()}
    out["rows"] = [{**row, "image": images[row["image"]]} for row in results["rows"]]
    return out


def _import(archive: Path, **kwargs: Any) -> ImportReport:
    with get_sessionmaker()() as db:
        return import_study(db, archive, **kwargs)


def _snapshot() -> tuple[dict[str, int], dict[str, str]]:
    """Row counts of every table and the hash of every stored file."""
    with session_scope() as db:
        counts = {
            t.name: int(db.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }
    root = images_root()
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (root.rglob("*") if root.exists() else [])
        if p.is_file()
    }
    return counts, files


def test_round_trip_is_exact(source: Source, target: Env, tmp_path: Path) -> None:
    # The owner exists here under the same name, and so does one reader; the others do not.
    make_user("alice", "alice-password", "researcher")
    make_user("r1", "r1-password", "reader")
    report = _import(source.archive)
    assert report.owner == "alice" and report.readers_matched == ["r1"]
    assert set(report.readers_created) == set(source.built.readers) - {"r1"}
    again = tmp_path / "again.zip"
    with get_sessionmaker()() as db:
        export_study(db, report.study_id, again)

    first, second = _manifest(source.archive), _manifest(again)
    (first_norm, first_ids), (second_norm, second_ids) = normalised(first), normalised(second)
    assert first_norm == second_norm
    # Not a vacuous equality: the study was read, by several readers, with every field set.
    assert len(first["answers"]) == 34 and len(first["readers"]) == 5
    assert len(first["images"]) == 16 and all(i["original"] for i in first["images"])
    assert {a["answer"] for a in first["answers"]} == {"real", "fake", "uncertain"}
    # The stored files, byte for byte, named by their hash.
    blobs = _blobs(source.archive)
    assert blobs == _blobs(again)
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in blobs.items())

    # The same numbers on the results page, in stats.json and the CSV, images renamed only.
    item = {f"img{a}": f"img{b}" for a, b in zip(first_ids["items"], second_ids["items"],
                                                  strict=True)}  # fmt: skip
    restored = _results(report.study_id)
    assert restored == _relabel(source.results, item)
    assert restored["wrong"]["readers"] and restored["wrong"]["fooling_rates"]

    # Never copied: password hashes of created readers, and the opaque ids readers saw.
    with session_scope() as db:
        created = db.scalars(select(User).where(User.username.in_(report.readers_created)))
        assert all(u.password_hash is None for u in created)
        ids = set(
            db.scalars(
                select(ScheduleEntry.opaque_id)
                .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
                .where(StudyReader.study_id == report.study_id)
            )
        )
    assert len(ids) == len(first["schedule"]) and "opaque_id" not in json.dumps(first)

    # The same archive again is refused, writing nothing; --as-new makes an independent copy.
    before = _snapshot()
    with pytest.raises(BackupError, match=f"already here as study {report.study_id}"):
        _import(source.archive)
    assert _snapshot() == before
    copy = _import(source.archive, as_new=True)
    assert copy.study_id != report.study_id and copy.readers_created == []


RATINGS = """reader,image,truth,answer,confidence,reason,source
R1,a,real,real,4,,
R1,b,fake,fake,5,too smooth,ganA
R1,c,fake,uncertain,2,hard to say,ganB
R2,a,real,fake,3,odd ribs,
R2,b,fake,real,4,,ganA
R2,c,fake,fake,5,grid artefact,ganB
"""


def test_imported_ratings_study_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path / "a", f"sqlite:///{tmp_path / 'a.sqlite'}", monkeypatch)
    owner = make_user("alice", "alice-password", "researcher")
    with session_scope() as db:
        study_id = import_ratings(db, owner_id=owner, name="Paper study", csv_text=RATINGS).id
    archive, again = tmp_path / "a.zip", tmp_path / "b.zip"
    with get_sessionmaker()() as db:
        export_study(db, study_id, archive)
    before = _results(study_id)
    get_engine().dispose()
    _install(tmp_path / "b", f"sqlite:///{tmp_path / 'b.sqlite'}", monkeypatch)
    make_user("alice", "alice-password", "researcher")
    report = _import(archive)
    with get_sessionmaker()() as db:
        export_study(db, report.study_id, again)
    assert normalised(_manifest(archive))[0] == normalised(_manifest(again))[0]
    assert len(_manifest(again)["external_ratings"]) == 6 and not _blobs(again)
    # Imported ratings name their images themselves: the results are equal as they stand.
    assert _results(report.study_id) == before and before["wrong"]["readers"]
    get_engine().dispose()


def _rewrite(
    src: Path,
    dst: Path,
    *,
    drop: Callable[[str], bool] = lambda _: False,
    change: Callable[[str, bytes], bytes] = lambda _, data: data,
    add: tuple[tuple[str, bytes], ...] = (),
) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if not drop(name):
                zout.writestr(name, change(name, zin.read(name)))
        for name, data in add:
            zout.writestr(name, data)


def _edit_manifest(edit: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        edit(manifest)
        return json.dumps(manifest).encode()

    return change


def _flip_byte_in_place(src: Path, dst: Path) -> None:
    """Damage one stored file's bytes without touching the zip's directory (its CRC fails)."""
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("files/"))
    data = bytearray(src.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    dst.write_bytes(bytes(data))


def _tamper_blob(src: Path, dst: Path) -> None:
    """Same length, valid CRC, other bytes: only the hash can tell."""
    blob = next(n for n in zipfile.ZipFile(src).namelist() if n.startswith("files/"))
    flip = lambda name, data: bytes([data[0] ^ 1]) + data[1:] if name == blob else data  # noqa: E731
    _rewrite(src, dst, change=flip)


def _drop_blob(src: Path, dst: Path) -> None:
    blob = next(n for n in zipfile.ZipFile(src).namelist() if n.startswith("files/"))
    _rewrite(src, dst, drop=lambda name: name == blob)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = manifest
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


REFUSALS: dict[str, tuple[Callable[[Path, Path], None], str, ImportLimits | None]] = {
    "truncated zip": (
        lambda s, d: d.write_bytes(s.read_bytes()[: s.stat().st_size // 2]),
        "is not a readable zip file",
        None,
    ),
    "damaged file": (_flip_byte_in_place, "is damaged", None),
    "hash mismatch": (_tamper_blob, "does not match its hash: the archive was altered", None),
    "missing file": (_drop_blob, "is missing from the archive", None),
    "unknown version": (
        lambda s, d: _rewrite(s, d, change=_edit_manifest(_set("format_version", 2))),
        "unknown backup format version 2; this synthbench reads version 1 (made by a newer",
        None,
    ),
    "newer schema": (
        lambda s, d: _rewrite(s, d, change=_edit_manifest(_set("alembic_revision", "9999"))),
        "schema '9999', which this synthbench does not know",
        None,
    ),
    "invalid value": (
        lambda s, d: _rewrite(s, d, change=_edit_manifest(_set("answers.0.answer", "maybe"))),
        "manifest.json: answers.0.answer: Input should be 'real', 'fake' or 'uncertain'",
        None,
    ),
    "dangling reference": (
        lambda s, d: _rewrite(s, d, change=_edit_manifest(_set("answers.0.entry_id", 99999))),
        "inconsistent: an answer refers to entry 99999, which is not in the archive",
        None,
    ),
    "unreadable design": (
        lambda s, d: _rewrite(s, d, change=_edit_manifest(_set("study.design.reading.x", 1))),
        "the study design cannot be read (TypeError: ",
        None,
    ),
    "zip slip": (
        lambda s, d: _rewrite(s, d, add=(("../../evil.txt", b"owned"),)),
        "entry '../../evil.txt' has an unsafe path (a '..' component (zip slip))",
        None,
    ),
    "stray entry": (
        lambda s, d: _rewrite(s, d, add=(("notes.txt", b"hello"),)),
        "entry 'notes.txt' is not part of a synthbench study backup",
        None,
    ),
    "too large": (
        lambda s, d: d.write_bytes(s.read_bytes()),
        "unpacked, over the 10,000 bytes limit",
        ImportLimits(max_file_bytes=10_000),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_archive_is_refused_and_nothing_is_written(
    case: str, source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path / "home", f"sqlite:///{tmp_path / 'target.sqlite'}", monkeypatch)
    make_user("alice", "alice-password", "researcher")
    _import(source.archive)  # something already here that must stay as it is
    tamper, message, limits = REFUSALS[case]
    bad = tmp_path / "bad.zip"
    tamper(source.archive, bad)
    before = _snapshot()
    # --as-new: these must be refused for what is wrong with them, not as a second import.
    with pytest.raises(BackupError) as refused:
        _import(bad, as_new=True, limits=limits)
    assert any(message in p for p in refused.value.problems), refused.value.problems
    assert _snapshot() == before
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path.parent / "evil.txt").exists()
    get_engine().dispose()


def test_cli_export_and_import(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "backup.zip"
    study = str(source.built.study_id)
    exported = run_cli(source.env, "export", study, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"Exported study {study} ('CXR realism') to {out}: 16 images")
    kept = run_cli(source.env, "export", study, "--out", str(out))
    assert kept.returncode == 1 and "exists already; pass --force" in kept.stderr

    target = _install(tmp_path / "home", f"sqlite:///{tmp_path / 'target.sqlite'}", monkeypatch)
    get_engine().dispose()
    no_owner = run_cli(target, "import", str(out))
    assert no_owner.returncode == 1 and no_owner.stdout == ""
    assert "Nothing was imported" in no_owner.stderr and "pass --owner USERNAME" in no_owner.stderr
    make_user("boss", "boss-password", "admin")
    imported = run_cli(target, "import", str(out))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("Imported 'CXR realism' as study 1 (study 1 in the archive)")
    assert "owned by boss" in imported.stdout
    assert "Readers created without a password: r1, r2, r4, reader-" in imported.stdout
    assert "They cannot sign in here" in imported.stdout
    twice = run_cli(target, "import", str(out))
    assert twice.returncode == 1 and twice.stdout == ""
    assert "already here as study 1" in twice.stderr and "--as-new" in twice.stderr
    copy = run_cli(target, "import", str(out), "--as-new")
    assert copy.returncode == 0 and "as study 2" in copy.stdout
    assert "Readers matched by username: r1, r2, r4, reader-" in copy.stdout
