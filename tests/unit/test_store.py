"""Prepared-dataset store and square resizing, on the 16 real paediatric chest X-rays."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from ml.data.collections import available_collections
from ml.data.images import load_image
from ml.data.resize import RULES, to_square
from ml.data.splits import patient_split
from ml.data.store import DatasetWriter, image_path, open_dataset

RESOLUTIONS = (32, 64)


def _patient(name: str) -> str:
    # NORMAL2-IM-1427-0001.jpeg -> IM-1427; person1946_bacteria_4874.jpeg -> person1946
    match = re.match(r"NORMAL2-(IM-\d+)|(person\d+)_", name)
    assert match is not None
    return match.group(1) or match.group(2)


@pytest.fixture(scope="module")
def cxr() -> list[tuple[str, str, str, str, NDArray[np.float32]]]:
    collections = available_collections()
    if "paediatric-cxr" not in collections:
        pytest.skip("pneumonia-model-package not installed")
    out = []
    for path, label in zip(
        collections["paediatric-cxr"].files, collections["paediatric-cxr"].labels, strict=True
    ):
        data = path.read_bytes()
        pixels = load_image(data).pixels
        out.append(
            (path.stem, _patient(path.name), label, hashlib.sha256(data).hexdigest(), pixels)
        )
    assert len(out) == 16
    return out


def _write(root: Path, cxr, n_expected: int | None = None, dtype: str = "uint8"):  # type: ignore[no-untyped-def]
    writer = DatasetWriter(root, RESOLUTIONS, n_expected or len(cxr), dtype, created_by="test")
    for key, patient, label, sha, pixels in cxr:
        writer.add(key, patient, {"pneumonia": int(label == "pneumonia")}, sha, pixels)
    splits = patient_split([(k, p, (lab,)) for k, p, lab, _, _ in cxr], seed=3)
    return writer.finish(splits)


def test_round_trip_two_resolutions(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    info = _write(tmp_path / "ds", cxr)
    assert info.n_images == 16
    assert info.n_patients == 15  # person1946 has two images
    assert info.resolutions == RESOLUTIONS
    assert info.label_names == ("pneumonia",)
    assert sum(info.splits.values()) == 16

    ds = open_dataset(tmp_path / "ds")
    assert ds.info == info
    assert [e.key for e in ds.entries] == [c[0] for c in cxr]
    for res in RESOLUTIONS:
        images = ds.images(res)
        assert images.shape == (16, res, res) and images.dtype == np.uint8
        assert not images.flags.writeable
        for row, (*_, pixels) in enumerate(cxr):
            expected = np.rint(to_square(pixels, res) * 255).astype(np.uint8)
            np.testing.assert_array_equal(images[row], expected)
    # Patients never straddle splits, as recorded in the manifest.
    split_of: dict[str, set[str]] = {}
    for e in ds.entries:
        split_of.setdefault(e.patient_key, set()).add(e.split)
    assert all(len(s) == 1 for s in split_of.values())

    pneumonia = ds.indices(labels={"pneumonia": 1})
    assert pneumonia.tolist() == list(range(8, 16))
    train_normal = ds.indices(split="train", labels={"pneumonia": False})
    assert all(ds.entries[i].split == "train" and i < 8 for i in train_normal)
    assert len(ds.indices()) == 16


def test_three_channel_round_trip(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    writer = DatasetWriter(tmp_path / "rgb", RESOLUTIONS, 5, channels=3, created_by="test")
    stacks = []
    for key, patient, label, sha, pixels in cxr[:4]:
        stack = np.stack([pixels, 1.0 - pixels, np.sqrt(pixels)]).astype(np.float32)
        stacks.append(stack)
        writer.add(key, patient, {"pneumonia": int(label == "pneumonia")}, sha, stack)
    with pytest.raises(ValueError, match=r"expected \(3, h, w\)"):
        writer.add("grey", "p", {}, "0" * 64, cxr[4][4])
    info = writer.finish({key: "train" for key, *_ in cxr[:4]})
    assert info.channels == 3
    ds = open_dataset(tmp_path / "rgb")
    assert ds.channels == 3 and ds.info == info and ds.verify()
    assert json.loads((tmp_path / "rgb" / "manifest.json").read_text())["channels"] == 3
    for res in RESOLUTIONS:
        images = ds.images(res)
        assert images.shape == (4, 3, res, res)
        for row, stack in enumerate(stacks):
            for c in range(3):
                expected = np.rint(to_square(stack[c], res) * 255).astype(np.uint8)
                np.testing.assert_array_equal(images[row, c], expected)
    # A file of the wrong size is refused before any row is read.
    with image_path(tmp_path / "rgb", 32, "uint8").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ValueError, match="not 12288 bytes"):
        open_dataset(tmp_path / "rgb")


def test_single_channel_manifest_has_no_channels_key(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    info = _write(tmp_path / "ds", cxr[:3])
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert "channels" not in manifest and info.channels == 1
    assert open_dataset(tmp_path / "ds").channels == 1
    writer = DatasetWriter(tmp_path / "bad", (16,), 1)
    with pytest.raises(ValueError, match=r"expected \(h, w\)"):
        writer.add("k", "p", {}, "0" * 64, np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="channels"):
        DatasetWriter(tmp_path / "two", (16,), 1, channels=2)


def test_hash_stable_and_detects_one_pixel(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    info = _write(tmp_path / "a", cxr)
    again = _write(tmp_path / "b", cxr)
    assert info.content_hash == again.content_hash  # no timestamps: same inputs, same hash
    ds = open_dataset(tmp_path / "a")
    assert ds.verify()
    assert open_dataset(tmp_path / "a").info.content_hash == info.content_hash

    path = image_path(tmp_path / "a", 32, "uint8")
    arr = np.memmap(path, dtype=np.uint8, mode="r+", shape=(16, 32, 32))
    arr[5, 10, 10] ^= 1
    arr.flush()
    del arr
    assert not open_dataset(tmp_path / "a").verify()


def test_hash_covers_manifest(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    _write(tmp_path / "ds", cxr)
    manifest_path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["entries"][0]["split"] = "elsewhere"
    manifest_path.write_text(json.dumps(manifest))
    assert not open_dataset(tmp_path / "ds").verify()


def test_fewer_rows_than_expected_are_truncated(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    info = _write(tmp_path / "ds", cxr[:5], n_expected=40, dtype="uint16")
    assert info.n_images == 5
    assert image_path(tmp_path / "ds", 64, "uint16").stat().st_size == 5 * 64 * 64 * 2
    ds = open_dataset(tmp_path / "ds")
    assert ds.images(64).shape == (5, 64, 64) and ds.images(64).dtype == np.dtype("<u2")
    assert ds.max_code == 65535 and ds.verify()
    expected = np.rint(to_square(cxr[4][4], 32) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(ds.images(32)[4], expected)


def test_writer_refuses_bad_use(tmp_path: Path, cxr) -> None:  # type: ignore[no-untyped-def]
    _write(tmp_path / "ds", cxr[:2])
    with pytest.raises(FileExistsError):
        DatasetWriter(tmp_path / "ds", RESOLUTIONS, 2)
    writer = DatasetWriter(tmp_path / "new", (16,), 1)
    key, patient, _, sha, pixels = cxr[0]
    writer.add(key, patient, {"pneumonia": 0}, sha, pixels)
    with pytest.raises(ValueError, match="duplicate"):
        writer.add(key, patient, {"pneumonia": 0}, sha, pixels)
    with pytest.raises(ValueError, match="n_expected"):
        writer.add("other", patient, {"pneumonia": 0}, sha, pixels)
    with pytest.raises(ValueError, match="no split"):
        writer.finish({})
    assert not (tmp_path / "new" / "manifest.json").exists()
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "new")


def test_pad_letterboxes_with_black() -> None:
    white = np.ones((10, 20), dtype=np.float32)  # 20 wide, 10 high
    out = to_square(white, 16, "pad")
    assert out.shape == (16, 16) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:4], 0.0)
    np.testing.assert_array_equal(out[12:], 0.0)
    np.testing.assert_allclose(out[4:12], 1.0, atol=1e-6)


def test_pad_odd_margin_goes_bottom_right() -> None:
    out = to_square(np.ones((7, 16), dtype=np.float32), 16, "pad")  # 7 rows: 9 black rows
    assert np.all(out[:4] == 0) and np.all(out[11:] == 0) and np.all(out[4:11] > 0.99)
    tall = to_square(np.ones((16, 7), dtype=np.float32), 16, "pad")
    assert np.all(tall[:, :4] == 0) and np.all(tall[:, 11:] == 0)


def test_crop_takes_centre_square() -> None:
    img = np.zeros((10, 20), dtype=np.float32)
    img[:, 5:15] = 1.0  # the centred 10x10 square is white, the sides black
    np.testing.assert_allclose(to_square(img, 10, "crop"), 1.0, atol=1e-6)
    assert to_square(img, 16, "crop").min() > 0.99


def test_resize_clips_and_validates() -> None:
    rng = np.random.default_rng(0)
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    out = to_square(checker, 13, "crop")  # Lanczos overshoots on hard edges: must be clipped
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert to_square(rng.random((5, 3)).astype(np.float32), 40).shape == (40, 40)
    with pytest.raises(ValueError):
        to_square(np.full((4, 4), np.nan, dtype=np.float32), 8)
    with pytest.raises(ValueError):
        to_square(np.ones((4, 4, 3), dtype=np.float32), 8)
    with pytest.raises(ValueError):
        to_square(np.ones((4, 4), dtype=np.float32), 8, "stretch")  # type: ignore[arg-type]


def test_resize_never_hands_back_the_input(tmp_path: Path) -> None:
    img = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    before = img.copy()
    for rule in RULES:  # 16 -> 16 needs no resampling, the case most likely to alias
        out = to_square(img, 16, rule)
        assert not np.shares_memory(out, img)
        out[...] = 0.0  # DatasetWriter.add scales to_square's result in place
    writer = DatasetWriter(tmp_path / "ds", (8, 16), 1)
    writer.add("key", "patient", {}, "0" * 64, img)
    np.testing.assert_array_equal(img, before)
