"""``synthbench dataset import / info / list / subset / fetch`` in real subprocesses on SQLite,
on small datasets in every format written from real images (see `dataset_fixtures`)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dataset_fixtures import (
    CHEXPERT_TOP,
    FINDINGS,
    SUBTYPES,
    Chexpert,
    DicomEncodings,
    Folder,
    MedMnist,
    Rsna,
    sha256_file,
    write_chexpert,
    write_chexpert_missing_columns,
    write_dicom_encodings,
    write_fake_png,
    write_folder,
    write_medmnist,
    write_rsna,
)
from pydicom.pixels import apply_modality_lut
from support import Env, run_cli

from ml.data.dicom import CT_WINDOW_PRESETS, apply_window
from ml.data.resize import to_square
from ml.data.store import PreparedDataset, open_dataset

INFO_KEYS = {
    "id", "name", "status", "format", "parent", "description", "n_images", "n_patients",
    "n_failed", "n_own_patients", "labels", "splits", "resolutions", "content_hash", "options",
    "summary", "notes", "errors", "error", "path",
}  # fmt: skip
# `import --json` adds the job that wrote the dataset and its resources, as `run … --json` does.
IMPORT_KEYS = INFO_KEYS | {"job_id", "resources"}


def _json_document(stdout: str) -> dict[str, Any]:
    """The JSON object printed last on stdout. `import --json` also prints its progress bar on
    stdout (see test_import_json_prints_only_json), so skip to the line opening the object."""
    start = stdout.index("{") if stdout.startswith("{") else stdout.index("\n{") + 1
    return json.loads(stdout[start:])


def _import(env: Env, source: Path, fmt: str, name: str, *extra: str) -> dict[str, Any]:
    done = run_cli(env, "dataset", "import", str(source), "--format", fmt, "--name", name, *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    info = _json_document(done.stdout) if "--json" in extra else _info(env, name)
    assert info["status"] == "ready", info
    return info


def _info(env: Env, name: str) -> dict[str, Any]:
    done = run_cli(env, "dataset", "info", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # nothing but JSON on stdout


def _manifest_text(info: dict[str, Any]) -> str:
    return (Path(info["path"]) / "manifest.json").read_text()


def _assert_patient_disjoint(store: PreparedDataset) -> None:
    splits_of: dict[str, set[str]] = {}
    for entry in store.entries:
        splits_of.setdefault(entry.patient_key, set()).add(entry.split)
    assert all(len(s) == 1 for s in splits_of.values()), splits_of
    assert len({e.split for e in store.entries}) >= 2  # else disjointness would be trivial


def _assert_no_raw_ids(info: dict[str, Any], raw_ids: list[str]) -> None:
    shown = json.dumps(info)
    manifest = _manifest_text(info)
    for raw in raw_ids:
        assert raw not in shown, f"{raw} in info --json"
        assert raw not in manifest, f"{raw} in manifest.json"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """One installation for the module (each test uses its own dataset names)."""
    home = tmp_path_factory.mktemp("cli-home")
    env = Env(home, f"sqlite:///{home / 'cli.sqlite'}", f"sqla+sqlite:///{home / 'broker.sqlite'}")
    upgraded = run_cli(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return env


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def chexpert(sources: Path) -> Chexpert:
    return write_chexpert(sources / "chexpert")


@pytest.fixture(scope="module")
def folder(sources: Path) -> Folder:
    return write_folder(sources / "folder", broken=True)


@pytest.fixture(scope="module")
def folder_info(cli_env: Env, folder: Folder) -> dict[str, Any]:
    return _import(cli_env, folder.root, "folder", "CXR folder", "--resolutions", "16,32")


# ---------------------------------------------------------------- CheXpert


POLICIES = ("ignore", "u-ones", "u-zeros")


@pytest.fixture(scope="module")
def chexpert_infos(cli_env: Env, chexpert: Chexpert) -> dict[str, dict[str, Any]]:
    """The CheXpert folder imported once under each uncertainty policy."""
    options = ("--resolutions", "32", "--json", "--uncertain")
    return {
        policy: _import(cli_env, chexpert.root, "chexpert", f"CheXpert {policy}", *options, policy)
        for policy in POLICIES
    }


@pytest.mark.parametrize("policy", POLICIES)
def test_chexpert_uncertainty_policy_sets_the_stored_labels(
    chexpert: Chexpert, chexpert_infos: dict[str, dict[str, Any]], policy: str
) -> None:
    info = chexpert_infos[policy]
    assert set(info) == IMPORT_KEYS
    assert info["format"] == "chexpert" and info["parent"] is None
    assert (info["n_images"], info["n_patients"], info["n_failed"]) == (14, 8, 0)
    assert info["labels"] == list(FINDINGS)
    assert info["resolutions"] == [32] and info["errors"] == [] and info["error"] is None
    assert sum(info["splits"].values()) == 14 and set(info["splits"]) <= {"train", "val", "test"}
    assert info["options"]["uncertain"] == policy
    assert info["options"]["format_options"] == {"policy": policy}

    store = open_dataset(info["path"])
    assert store.verify() and store.info.content_hash == info["content_hash"]
    assert store.images(32).shape == (14, 32, 32)
    # Each stored image is identified by its source file's sha256: compare labels exactly.
    stored = {e.source_sha256: e.labels for e in store.entries}
    assert stored == chexpert.expected_labels(policy)
    assert chexpert.uncertain_cells() == 10
    missing = sum(len(FINDINGS) - len(labels) for labels in stored.values())
    assert missing == (10 if policy == "ignore" else 0)  # blanks are negatives, never missing
    cardiomegaly = Counter(labels.get("Cardiomegaly") for labels in stored.values())
    expected = {"ignore": {0: 12, None: 2}, "u-ones": {0: 12, 1: 2}, "u-zeros": {0: 14}}
    assert cardiomegaly == expected[policy]

    _assert_patient_disjoint(store)
    # Two images for each train patient, one per valid patient: eight patient keys, and the
    # images of one raw patient always share one key.
    key_of: dict[str, set[str]] = {}
    for entry in store.entries:
        key_of.setdefault(chexpert.patient_of[entry.source_sha256], set()).add(entry.patient_key)
    assert sorted(key_of) == chexpert.patients and all(len(k) == 1 for k in key_of.values())
    assert len({e.patient_key for e in store.entries}) == 8
    _assert_no_raw_ids(info, [*chexpert.patients, "patient0", CHEXPERT_TOP])


def test_chexpert_policies_change_labels_not_pixels(
    chexpert_infos: dict[str, dict[str, Any]],
) -> None:
    hashes = {info["content_hash"] for info in chexpert_infos.values()}
    assert len(hashes) == 3
    stores = [open_dataset(info["path"]) for info in chexpert_infos.values()]
    first = {e.source_sha256: i for i, e in enumerate(stores[0].entries)}
    for other in stores[1:]:
        rows = {e.source_sha256: i for i, e in enumerate(other.entries)}
        assert rows.keys() == first.keys()
        for digest, i in first.items():
            np.testing.assert_array_equal(stores[0].images(32)[i], other.images(32)[rows[digest]])


def test_chexpert_report_of_a_broken_image_names_no_patient(cli_env: Env, tmp_path: Path) -> None:
    data = write_chexpert(tmp_path / "chexpert", n_train_patients=3, n_valid_patients=1)
    broken = data.root / CHEXPERT_TOP / "train" / "patient00002" / "study1" / "view1_frontal.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # a cut-off JPEG: one line in the report
    info = _import(cli_env, data.root, "chexpert", "CheXpert broken", "--resolutions", "16")
    assert info["n_failed"] == 1 and len(info["errors"]) == 1
    assert "view1_frontal.jpg" in info["errors"][0]  # the report must still point at the file
    _assert_no_raw_ids(info, data.patients)


# ---------------------------------------------------------------- RSNA


def _windowed(path: Path, window: str, res: int) -> np.ndarray:
    """The file windowed independently of the importer: pydicom's modality LUT (HU), the
    DICOM linear VOI function, then the store's resize and 8-bit rounding."""
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    center, width = CT_WINDOW_PRESETS[window]
    grey = apply_window(hu, center, width)
    return np.rint(to_square(grey, res, "pad") * 255).astype(np.uint8)


def test_rsna_ct_window_is_applied_and_clips(cli_env: Env, sources: Path) -> None:
    data: Rsna = write_rsna(sources / "rsna", broken=True)
    brain = _import(cli_env, data.root, "rsna", "RSNA brain", "--resolutions", "32",
                    "--window", "brain", "--json")  # fmt: skip
    bone = _import(cli_env, data.root, "rsna", "RSNA bone", "--resolutions", "32",
                   "--window", "bone", "--json")  # fmt: skip
    assert brain["options"]["window"] == "brain" and bone["options"]["window"] == "bone"
    assert (brain["n_images"], brain["n_patients"], brain["n_failed"]) == (8, 4, 2)
    assert brain["labels"] == list(SUBTYPES)
    truncated, nopixels = (f"stage_2_train/{image_id}.dcm" for image_id in data.broken)
    # Each broken image's first CSV row follows the good images' six rows each (header: line 1).
    first = 2 + len(SUBTYPES) * data.n_images
    assert len(brain["errors"]) == 2
    assert brain["errors"][0].startswith(f"stage_2_train.csv line {first}: {truncated}: ")
    assert "truncated" in brain["errors"][0]
    assert brain["errors"][1].startswith(f"stage_2_train.csv line {first + 6}: {nopixels}: ")
    assert "no pixel data" in brain["errors"][1]
    assert brain["notes"] == [] and brain["n_own_patients"] == 0  # every header has a patient

    by_sha = data.by_sha256()
    stores = {"brain": open_dataset(brain["path"]), "bone": open_dataset(bone["path"])}
    for window, store in stores.items():
        assert {by_sha[e.source_sha256] for e in store.entries} == set(data.files)
        for row, entry in enumerate(store.entries):
            image_id = by_sha[entry.source_sha256]
            assert entry.labels == data.labels[image_id]
            expected = _windowed(data.files[image_id], window, 32)
            stored = np.asarray(store.images(32)[row])
            # Same maths in float32 vs float64: at most one 8-bit step apart.
            assert np.abs(stored.astype(int) - expected.astype(int)).max() <= 1, window
        _assert_patient_disjoint(store)

    brain_px = np.asarray(stores["brain"].images(32))
    bone_px = np.asarray(stores["bone"].images(32))
    # The brain window (0..80 HU) clips air to black and bone / contrast to white; the bone
    # window (-800..2000 HU) holds all of CT_small's -896..1167 HU except the darkest air.
    assert (brain_px == 0).mean() > 0.2 and (brain_px == 255).mean() > 0.05
    assert (bone_px == 255).sum() == 0
    assert not np.array_equal(brain_px, bone_px)
    assert brain["content_hash"] != bone["content_hash"]
    _assert_no_raw_ids(brain, [*data.patients, "1CT1"])
    _assert_no_raw_ids(bone, data.patients)


# ---------------------------------------------------------------- DICOM + CSV


def test_dicom_csv_keeps_every_readable_image_and_reports_honest_counts(
    cli_env: Env, tmp_path: Path
) -> None:
    """The issue's held-out folder: eight encodings, one without a PatientID, plus a truncated
    file and a non-DICOM file."""
    data: DicomEncodings = write_dicom_encodings(tmp_path / "held-out")
    done = run_cli(cli_env, "dataset", "import", str(data.root), "--format", "dicom-csv",
                   "--name", "held-out DICOMs", "--resolutions", "16")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    info = _info(cli_env, "held-out DICOMs")
    assert (info["n_images"], len(info["errors"])) == (8, 2)
    assert info["n_own_patients"] == len(data.without_patient) == 1
    # 1CT1, 4MR1 and 8NM1 from the headers, and the deflated image on its own.
    assert info["n_patients"] == len(data.patients) + 1 == 4
    assert info["notes"] == [
        "1 image had no PatientID and was treated as a separate patient; "
        "a patient_id column in the CSV would group them by patient"
    ]
    for image_id, line in data.broken.items():
        [error] = [e for e in info["errors"] if f"{image_id}.dcm: " in e]
        assert error.startswith(f"labels.csv line {line}: "), error
    assert "truncated" in next(e for e in info["errors"] if "truncated.dcm" in e)

    # The bar's last line (stderr) is the report's summary, and counts the report's lines.
    assert info["summary"] == "9/9 images read, 8 imported, 2 problem(s)"
    assert info["summary"] in done.stderr and "(1 failed)" not in done.stderr
    assert f"  {info['summary']}:" in done.stdout and info["notes"][0] in done.stdout

    store = open_dataset(info["path"])
    by_sha = {sha256_file(path): image_id for image_id, path in data.files.items()}
    assert {by_sha[e.source_sha256] for e in store.entries} == set(data.files)
    patient_of = {by_sha[e.source_sha256]: e.patient_key for e in store.entries}
    alone = patient_of.pop("deflated")
    assert alone not in patient_of.values()
    _assert_patient_disjoint(store)
    _assert_no_raw_ids(info, data.patients)


# ---------------------------------------------------------------- MedMNIST


def test_medmnist_keeps_the_official_split_and_pixels(cli_env: Env, sources: Path) -> None:
    data: MedMnist = write_medmnist(sources / "medmnist" / "pneumoniamnist.npz")
    info = _import(cli_env, data.path, "medmnist", "PneumoniaMNIST tiny", "--resolutions", "28,32",
                   "--seed", "7", "--json")  # fmt: skip
    assert info["splits"] == {"test": 4, "train": 8, "val": 4}
    assert (info["n_images"], info["n_patients"], info["n_failed"]) == (16, 16, 0)
    assert info["labels"] == ["class_0", "class_1"] and info["resolutions"] == [28, 32]
    store = open_dataset(info["path"])
    for row, entry in enumerate(store.entries):
        split, index = entry.key.split("/")
        assert entry.split == split  # the official split, whatever the seed
        label = int(data.arrays[f"{split}_labels"][int(index), 0])
        assert entry.labels == {"class_0": int(label == 0), "class_1": int(label == 1)}
        # 28 px stored at 28 px: the very bytes of the npz.
        np.testing.assert_array_equal(
            store.images(28)[row], data.arrays[f"{split}_images"][int(index)]
        )
    counts = Counter((e.split, e.labels["class_1"]) for e in store.entries)
    for split in ("train", "val", "test"):
        ones = int(data.arrays[f"{split}_labels"].sum())
        assert counts[(split, 1)] == ones and counts[(split, 0)] == data.count(split) - ones


# ---------------------------------------------------------------- folder, report, info


def test_folder_import_reports_each_broken_file_and_keeps_the_rest(
    cli_env: Env, folder: Folder, folder_info: dict[str, Any]
) -> None:
    info = folder_info
    assert set(info) == INFO_KEYS
    assert (info["n_images"], info["n_patients"], info["n_failed"]) == (16, 16, 3)
    assert info["labels"] == ["normal", "pneumonia"] and info["resolutions"] == [16, 32]
    assert sum(info["splits"].values()) == 16 and len(info["splits"]) == 3
    by_file = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in info["errors"]}
    assert set(by_file) == set(folder.broken)
    assert "truncated" in by_file["normal/truncated.dcm"]
    assert "no pixel data" in by_file["normal/nopixels.dcm"]
    assert "PNG" in by_file["pneumonia/fake.png"]

    store = open_dataset(info["path"])
    assert Counter(e.labels["pneumonia"] for e in store.entries) == {0: 8, 1: 8}
    assert all(e.labels["normal"] + e.labels["pneumonia"] == 1 for e in store.entries)
    _assert_patient_disjoint(store)
    _assert_no_raw_ids(info, folder.stems)

    listed = run_cli(cli_env, "dataset", "list")
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if x.endswith("CXR folder"))
    assert "ready" in line and "16 images" in line

    text = run_cli(cli_env, "dataset", "info", "CXR folder")
    assert text.returncode == 0
    assert info["summary"] == "19/19 images read, 16 imported, 3 problem(s)"
    assert f"{info['summary']}:" in text.stdout and "pneumonia/fake.png" in text.stdout
    # A folder's patients are its file stems (or patients.csv), never a DICOM header.
    assert info["notes"] == [] and info["n_own_patients"] == 0
    unknown = run_cli(cli_env, "dataset", "info", "no such dataset", "--json")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "No dataset called 'no such dataset'" in unknown.stderr


def test_every_image_broken_fails_the_import(cli_env: Env, tmp_path: Path) -> None:
    write_fake_png(tmp_path / "normal" / "a.png")
    write_fake_png(tmp_path / "pneumonia" / "b.png")
    done = run_cli(cli_env, "dataset", "import", str(tmp_path), "--format", "folder",
                "--name", "all broken", "--resolutions", "16", "--json")  # fmt: skip
    assert done.returncode == 1
    info = _json_document(done.stdout)
    assert info["status"] == "failed" and info["content_hash"] is None
    assert "all 2 image(s) failed" in info["error"] and "normal/a.png" in info["error"]
    assert _rows(cli_env)["all broken"] == "failed"


def test_import_json_prints_only_json(cli_env: Env, tmp_path: Path) -> None:
    data = write_medmnist(tmp_path / "tiny.npz", split_sizes=(2, 1, 1))
    done = run_cli(cli_env, "dataset", "import", str(data.path), "--format", "medmnist",
                "--name", "json only", "--resolutions", "8", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["n_images"] == 4
    # Like every `run … --json`: the job that wrote it and what it cost (issue 17, CLI parity).
    assert isinstance(info["job_id"], int)
    assert info["resources"]["wall_s"] > 0
    assert info["resources"]["device"]


# ---------------------------------------------------------------- failures


def _rows(env: Env) -> dict[str, str]:
    """name -> status of every dataset row, read straight from the SQLite file."""
    with sqlite3.connect(env.database_url.removeprefix("sqlite:///")) as db:
        return dict(db.execute("SELECT name, status FROM datasets").fetchall())


def test_csv_missing_columns_fails_clearly_and_the_name_can_be_reused(
    cli_env: Env, chexpert: Chexpert, tmp_path: Path
) -> None:
    bad = write_chexpert_missing_columns(tmp_path / "bad")
    done = run_cli(cli_env, "dataset", "import", str(bad), "--format", "chexpert",
                "--name", "Retry me", "--resolutions", "16")  # fmt: skip
    assert done.returncode == 1
    assert "missing column(s) Edema, Pleural Other" in done.stdout
    info = _info(cli_env, "Retry me")
    assert info["status"] == "failed" and info["n_images"] == 0
    assert "train.csv: missing column(s) Edema, Pleural Other" in info["error"]
    assert "Traceback" not in info["error"]
    assert "importing" not in _rows(cli_env).values()
    assert _rows(cli_env)["Retry me"] == "failed"

    again = _import(cli_env, chexpert.root, "chexpert", "Retry me", "--resolutions", "16",
                    "--json")  # fmt: skip
    assert again["n_images"] == 14 and open_dataset(again["path"]).verify()
    assert list(_rows(cli_env)).count("Retry me") == 1
    assert _rows(cli_env)["Retry me"] == "ready"
    # A ready dataset keeps its name.
    taken = run_cli(cli_env, "dataset", "import", str(chexpert.root), "--format", "chexpert",
                 "--name", "Retry me", "--resolutions", "16")  # fmt: skip
    assert taken.returncode == 1 and "already exists" in taken.stderr


def test_bad_options_exit_1_before_anything_is_created(cli_env: Env, folder: Folder) -> None:
    before = _rows(cli_env)
    # The option parsers are the web form's; tests/integration/test_datasets_web.py covers the
    # other messages. Here: they reach stderr with exit code 1.
    done = run_cli(cli_env, "dataset", "import", str(folder.root), "--format", "dicom-zip",
                "--name", "never")  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert "--format: Unknown format 'dicom-zip'; choose one of chexpert, rsna" in done.stderr
    missing = run_cli(cli_env, "dataset", "import", str(folder.root / "nope"), "--format", "folder",
                   "--name", "never")  # fmt: skip
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    assert _rows(cli_env) == before


def test_fetch_offline_exits_1_with_a_clear_message(cli_env: Env, tmp_path: Path) -> None:
    dest = tmp_path / "downloads"
    done = run_cli(cli_env, "dataset", "fetch", "medmnist:pneumoniamnist", "--dest", str(dest))
    assert done.returncode == 1 and done.stdout == ""
    assert "could not download medmnist:pneumoniamnist" in done.stderr.lower()
    assert "import the .npz with --format medmnist" in done.stderr
    assert "Traceback" not in done.stderr
    assert not dest.exists() or list(dest.iterdir()) == []  # no partial file left behind
    unknown = run_cli(cli_env, "dataset", "fetch", "kaggle:rsna", "--dest", str(dest))
    assert unknown.returncode == 1 and "expected medmnist:NAME" in unknown.stderr


# ---------------------------------------------------------------- subsets


def _subset(env: Env, parent: str, name: str, *args: str) -> dict[str, Any]:
    done = run_cli(env, "dataset", "subset", parent, "--name", name, *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    info = _json_document(done.stdout)
    assert info["status"] == "ready" and info["format"] == "subset"
    return info


def test_subset_samples_per_class_caps_train_and_keeps_val_test(
    cli_env: Env, folder_info: dict[str, Any]
) -> None:
    info = _subset(cli_env, "CXR folder", "CXR 2 per class", "--kind", "samples_per_class",
                   "--value", "2", "--resolutions", "32")  # fmt: skip
    parent = open_dataset(folder_info["path"])
    child = open_dataset(info["path"])
    assert info["parent"] == folder_info["id"] and info["resolutions"] == [32]
    assert child.manifest["derived_from"]["content_hash"] == folder_info["content_hash"]
    assert info["content_hash"] != folder_info["content_hash"] and child.verify()
    splits = folder_info["splits"]
    assert info["splits"] == {"train": 4, "val": splits["val"], "test": splits["test"]}
    assert Counter(e.labels["pneumonia"] for e in child.entries if e.split == "train") == {
        0: 2,
        1: 2,
    }
    parent_rows = {e.key: (i, e) for i, e in enumerate(parent.entries)}
    for row, entry in enumerate(child.entries):
        i, original = parent_rows[entry.key]
        assert entry == original  # same split, labels, patient key and source hash
        np.testing.assert_array_equal(child.images(32)[row], parent.images(32)[i])
    held_out = {e.key for e in parent.entries if e.split != "train"}
    assert held_out <= {e.key for e in child.entries}


def test_subset_classes_keeps_the_most_frequent_combinations(
    cli_env: Env, folder_info: dict[str, Any]
) -> None:
    info = _subset(cli_env, "CXR folder", "CXR one class", "--kind", "classes", "--value", "1")
    child = open_dataset(info["path"])
    assert child.manifest["derived_from"]["content_hash"] == folder_info["content_hash"]
    assert info["n_images"] == 8 and info["resolutions"] == [16, 32]
    assert len({child.label_tuple(e) for e in child.entries}) == 1
    assert sum(info["splits"].values()) == 8
    bad = run_cli(cli_env, "dataset", "subset", "CXR folder", "--name", "x", "--kind", "classes",
               "--value", "1", "--resolutions", "64")  # fmt: skip
    assert bad.returncode == 1 and "[64] not stored in this dataset (have 16, 32)" in bad.stderr
    orphan = run_cli(cli_env, "dataset", "subset", "nothing", "--name", "y", "--kind", "all")
    assert orphan.returncode == 1 and "No dataset called 'nothing'" in orphan.stderr
