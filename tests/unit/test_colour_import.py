"""Colour import: `auto` keeps RGB for colour photographs and grey for grey films, stored rows
are the source's R, G, B, grey imports do not change, and GAN grids / samples are RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from colour_fixtures import CLASSES, write_colour_folder
from dataset_fixtures import write_folder
from PIL import Image

from app.datasets.options import parse_import_options
from app.jobs.specs import SpecError
from ml.data.colour import has_colour, image_has_colour, resolve_colour
from ml.data.images import load_image, load_rgb_image
from ml.data.prepare import prepare_dataset
from ml.data.resize import to_square
from ml.data.store import open_dataset
from ml.training.grid import save_grid, to_uint8

SALT = "colour-test-salt"


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, format="PNG")
    return out.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_load_rgb_image_keeps_each_channel_exactly() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    rgb = load_rgb_image(_png(codes))
    assert rgb.shape == (3, 9, 7) and rgb.dtype == np.float32
    assert np.array_equal(np.rint(rgb * 255).astype(np.uint8), codes.transpose(2, 0, 1))
    # The grey decoder of the same file gives the luminance, which loses the channels.
    grey = load_image(_png(codes)).pixels
    assert np.allclose(grey, rgb.transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114]), atol=1e-6)


def test_load_rgb_image_grey_and_alpha() -> None:
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    rgb = load_rgb_image(_png(grey))
    assert all(np.array_equal(rgb[c], load_image(_png(grey)).pixels) for c in range(3))
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.array([[255, 0], [51, 255]])
    out = load_rgb_image(_png(rgba, "RGBA"))
    # Composited onto black, as the grey decoder does: red scaled by alpha, nothing elsewhere.
    assert np.allclose(out[0], 200 / 255 * rgba[..., 3] / 255, atol=1e-6)
    assert not out[1:].any()


def test_auto_detects_colour_by_pixels_not_by_file_mode() -> None:
    from colour_fixtures import photo

    flower = photo("flower").resize((64, 43))
    assert image_has_colour(_jpeg(flower))
    # A grey film saved as an RGB JPEG (a common PACS export) is grey.
    grey_as_rgb = flower.convert("L").convert("RGB")
    assert grey_as_rgb.mode == "RGB" and not image_has_colour(_jpeg(grey_as_rgb))
    assert not image_has_colour(b"not an image")
    # A small coloured mark on a grey image stays under the share.
    marked = np.repeat(np.asarray(flower.convert("L"))[..., None], 3, axis=-1)
    marked[:2, :2] = (255, 0, 0)
    assert not has_colour(marked)


def test_resolve_colour(tmp_path: Path) -> None:
    colour = write_colour_folder(tmp_path / "colour", per_class=2)
    grey = write_folder(tmp_path / "grey")
    colour_files = [p for files in colour.files.values() for p in files]
    grey_files = [p for files in grey.classes.values() for p in files]
    assert resolve_colour("auto", colour_files) and not resolve_colour("auto", grey_files)
    assert resolve_colour("rgb", grey_files) and not resolve_colour("grey", colour_files)
    with pytest.raises(ValueError, match="colour must be one of"):
        resolve_colour("sepia", colour_files)


def test_colour_dataset_is_stored_as_rgb(tmp_path: Path) -> None:
    folder = write_colour_folder(tmp_path / "src", per_class=3, jpeg=True)
    result = prepare_dataset(
        folder.root, "folder", tmp_path / "out", resolutions=(16,), salt=SALT, colour="auto"
    )
    store = open_dataset(tmp_path / "out")
    assert result.info.channels == 3 and store.channels == 3
    assert store.manifest["channels"] == 3 and store.verify()
    rows = store.images(16)
    assert rows.shape == (6, 3, 16, 16)
    by_sha = {e.source_sha256: i for i, e in enumerate(store.entries)}
    import hashlib

    for name in CLASSES:
        for path in folder.files[name]:
            data = path.read_bytes()
            row = rows[by_sha[hashlib.sha256(data).hexdigest()]]
            want = np.stack([to_square(c, 16, "pad") for c in load_rgb_image(data)])
            assert np.array_equal(row, np.rint(want * 255).astype(np.uint8))
    # Real colour survives: the channels differ.
    assert np.abs(rows[:, 0].astype(int) - rows[:, 2].astype(int)).mean() > 5


def test_grey_import_is_unchanged_and_colour_can_be_refused(tmp_path: Path) -> None:
    grey = write_folder(tmp_path / "grey").root
    auto = prepare_dataset(grey, "folder", tmp_path / "a", resolutions=(16,), salt=SALT)
    plain = prepare_dataset(
        grey, "folder", tmp_path / "b", resolutions=(16,), salt=SALT, colour="auto"
    )
    assert auto.info.channels == plain.info.channels == 1
    assert auto.info.content_hash == plain.info.content_hash
    assert "channels" not in open_dataset(tmp_path / "b").manifest
    colour = write_colour_folder(tmp_path / "colour", per_class=2).root
    forced = prepare_dataset(
        colour, "folder", tmp_path / "c", resolutions=(16,), salt=SALT, colour="grey"
    )
    assert forced.info.channels == 1
    with pytest.raises(ValueError, match="cannot be colour"):
        prepare_dataset(colour, "folder", tmp_path / "d", salt=SALT, window="stack", colour="rgb")


def test_import_options_colour() -> None:
    assert parse_import_options("folder").colour == "auto"
    assert parse_import_options("folder", colour=" RGB ").as_params()["colour"] == "rgb"
    assert parse_import_options("rsna", window="stack").colour == "grey"
    with pytest.raises(SpecError) as err:
        parse_import_options("folder", colour="sepia")
    assert err.value.field == "colour"
    with pytest.raises(SpecError):
        parse_import_options("rsna", window="stack", colour="rgb")


def test_grids_and_samples_are_rgb(tmp_path: Path) -> None:
    images = torch.linspace(-1, 1, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    tiles = to_uint8(images)
    assert tiles.shape == (2, 4, 5, 3)
    assert np.array_equal(tiles[1, :, :, 2], to_uint8(images[1:, 2:3])[0])
    with Image.open(save_grid(images, 1, tmp_path / "grid.png")) as im:
        assert im.mode == "RGB"
    assert to_uint8(images[:, :1]).shape == (2, 4, 5)


def test_attribution_overlay_is_drawn_over_the_colour_image() -> None:
    from ml.attribution import overlay_png

    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (3, 8, 8))
    heat = np.zeros((8, 8))
    heat[2, 3] = 1.0
    with Image.open(io.BytesIO(overlay_png(image, heat))) as im:
        drawn = np.asarray(im, dtype=int)
    expected = np.rint((image.transpose(1, 2, 0) + 1) * 127.5)
    # Where the map is zero the picture is the image itself, channel by channel.
    cold = heat == 0
    assert np.abs(drawn[cold] - expected[cold]).max() <= 1
    assert np.abs(drawn[2, 3] - expected[2, 3]).max() > 10


def test_blinded_copy_of_a_colour_image_is_rgb() -> None:
    from colour_fixtures import colour_crops

    from app.domain.blinding import canonical_png, canonical_png_rgb, png_chunk_types

    crop = colour_crops("flower", 1, side=40)[0]
    rgb = load_rgb_image(_png(np.asarray(crop)))
    data = canonical_png_rgb(rgb, size=64)
    assert png_chunk_types(data) == ["IHDR", "IDAT", "IEND"]
    assert canonical_png_rgb(rgb, size=64) == data
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGB" and im.size == (64, 64)
        shown = np.asarray(im)
    # Each channel is what the grey blinded copy of that channel alone would be.
    for c in range(3):
        with Image.open(io.BytesIO(canonical_png(rgb[c], size=64))) as grey:
            assert np.array_equal(shown[..., c], np.asarray(grey))
    assert has_colour(shown)


def test_medmnist_colour_arrays_are_stored_as_rgb(tmp_path: Path) -> None:
    from colour_fixtures import colour_crops
    from dataset_fixtures import write_medmnist

    # A DermaMNIST-like npz: (n, 28, 28, 3) uint8 images of both photographs.
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        crops = colour_crops("china", n, side=28, seed=n) + colour_crops("flower", n, side=28)
        arrays[f"{split}_images"] = np.stack([np.asarray(c) for c in crops])
        arrays[f"{split}_labels"] = np.asarray([[0]] * n + [[1]] * n, dtype=np.uint8)
    npz = tmp_path / "dermamnist.npz"
    np.savez_compressed(npz, **arrays)
    result = prepare_dataset(npz, "medmnist", tmp_path / "out", resolutions=(28,), salt=SALT)
    assert result.info.channels == 1  # the ml default stays grey
    colour = prepare_dataset(
        npz, "medmnist", tmp_path / "rgb", resolutions=(28,), salt=SALT, colour="auto"
    )
    store = open_dataset(tmp_path / "rgb")
    assert colour.info.channels == 3
    row = store.entries.index(next(e for e in store.entries if e.key == "train/1"))
    assert np.array_equal(store.images(28)[row], arrays["train_images"][1].transpose(2, 0, 1))
    grey = write_medmnist(tmp_path / "pneumonia.npz")
    plain = prepare_dataset(
        grey.path, "medmnist", tmp_path / "grey", resolutions=(28,), salt=SALT, colour="auto"
    )
    assert plain.info.channels == 1


def test_sampled_dicom_of_a_colour_run_is_rgb(tmp_path: Path) -> None:
    import pydicom

    from ml.sampling import _write_dicom

    pixels = np.random.default_rng(2).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    _write_dicom(tmp_path / "a.dcm", pixels, "dcgan@1kimg", "0" * 64)
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert "SYNTHETIC" in ds.ImageType and np.array_equal(ds.pixel_array, pixels)
