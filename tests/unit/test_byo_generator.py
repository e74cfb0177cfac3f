"""Bring your own generator (issue 17): a TorchScript module with a manifest is checked
(loads, shape, range, reproducible), previewed and sampled like a synthbench run; bad input
gets an error that says what is wrong."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.gans import byo
from app.gans.service import checkpoint_of
from app.jobs.specs import SpecError
from app.models import Job
from ml.generators.index import TORCHSCRIPT_INDEX
from ml.generators.manifest import ManifestError, parse_manifest, parse_manifest_text
from ml.generators.torchscript import GeneratorCheckError, import_torchscript
from ml.sampling import sample_images, seeded_inputs

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit")

LATENT, RES = 6, 8
MANIFEST = {
    "name": "tiny",
    "latent_size": LATENT,
    "classes": ["normal", "pneumonia"],
    "resolution": RES,
    "channels": 1,
    "output_range": [0, 255],
}


class TinyGenerator(torch.nn.Module):
    """z and a class embedding through a linear layer to pixels in [0, 255]."""

    def __init__(self, resolution: int = RES, noisy: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(2, LATENT)
        self.linear = torch.nn.Linear(LATENT, resolution * resolution)
        self.resolution = resolution
        self.noisy = noisy

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.linear(z + 3.0 * self.embed(y))
        if self.noisy:
            h = h + torch.randn_like(h)
        x = (torch.tanh(h) + 1.0) * 127.5
        return x.view(-1, 1, self.resolution, self.resolution)


def _script(path: Path, module: torch.nn.Module) -> Path:
    torch.jit.script(module).save(str(path))
    return path


@pytest.fixture
def module_file(tmp_path: Path) -> Path:
    return _script(tmp_path / "g.pt", TinyGenerator())


def test_an_imported_generator_is_sampled_like_a_run(module_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    facts = import_torchscript(module_file, MANIFEST, run)
    assert facts["class_names"] == ["normal", "pneumonia"] and (run / facts["preview"]).is_file()
    preview = np.asarray(Image.open(run / facts["preview"]))
    assert preview.shape[0] > RES * 2 - 1  # a row per class
    job = Job(id=9, type="import_generator", artefact_dir=str(run), params={})
    path, _ = checkpoint_of(job)
    assert path == run / TORCHSCRIPT_INDEX
    out = tmp_path / "samples"
    result = sample_images(path, out, per_class=3, seed=11, classes=["pneumonia", "normal"])
    assert result.per_class == {"pneumonia": 3, "normal": 3} and result.source == "imported tiny"
    assert result.checkpoint_sha256 == facts["sha256"] and not result.truncation_applied
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert sorted(r["label"] for r in rows) == ["normal"] * 3 + ["pneumonia"] * 3
    # Each PNG is the module's own image for (z of the image's seed, its class), mapped from
    # [0, 255] to pixels: the output range is honoured, not clipped or stretched.
    module = torch.jit.load(str(module_file))
    for row in rows:
        z, _ = seeded_inputs([int(row["seed"])], LATENT, None)
        y = torch.tensor([MANIFEST["classes"].index(row["label"])])
        with torch.no_grad():
            expected = module(z, y)[0, 0].numpy()
        pixels = np.asarray(Image.open(out / row["file"])).astype(float)
        assert np.abs(pixels - expected).max() <= 1.0
    # Sampling again gives the same files: reproducible from seed, class and module.
    again = sample_images(path, tmp_path / "again", per_class=3, seed=11)
    for row in rows:
        a = np.asarray(Image.open(out / row["file"]))
        assert np.array_equal(a, np.asarray(Image.open(Path(again.folder) / row["file"])))


def test_not_torchscript_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, bogus)  # a state dict, not a module: a zip all the same
    with pytest.raises(GeneratorCheckError, match="not a TorchScript module"):
        import_torchscript(bogus, MANIFEST, tmp_path / "run")
    assert not (tmp_path / "run" / TORCHSCRIPT_INDEX).exists()


def test_a_module_whose_images_contradict_its_manifest_is_refused(
    module_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(GeneratorCheckError, match=r"shape \(8, 1, 8, 8\).*\(8, 1, 16, 16\)"):
        import_torchscript(module_file, {**MANIFEST, "resolution": 16}, tmp_path / "a")
    with pytest.raises(GeneratorCheckError, match=r"outside the manifest's output_range \[-1, 1\]"):
        import_torchscript(module_file, {**MANIFEST, "output_range": [-1, 1]}, tmp_path / "b")
    with pytest.raises(GeneratorCheckError, match="failed"):
        import_torchscript(module_file, {**MANIFEST, "latent_size": 5}, tmp_path / "c")
    noisy = _script(tmp_path / "noisy.pt", TinyGenerator(noisy=True))
    with pytest.raises(GeneratorCheckError, match="different images for the same"):
        import_torchscript(noisy, MANIFEST, tmp_path / "d")


def test_manifest_errors_name_the_field() -> None:
    assert parse_manifest(MANIFEST).output_range == (0.0, 255.0)
    partial = {k: v for k, v in MANIFEST.items() if k not in ("latent_size", "resolution")}
    with pytest.raises(ManifestError, match="lacks latent_size, resolution"):
        parse_manifest(partial)
    for field, bad in (
        ("channels", 2),
        ("classes", []),
        ("classes", ["a", "a"]),
        ("output_range", [1, 0]),
        ("latent_size", 1.5),
        ("resolution", True),
    ):
        with pytest.raises(ManifestError, match=field):
            parse_manifest({**MANIFEST, field: bad})
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest_text("{latent_size: 4")


def test_the_web_tier_refuses_non_zip_and_oversized_files(
    module_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(byo, "generators_dir", lambda: tmp_path / "store")
    with pytest.raises(SpecError, match="not a TorchScript module") as info:
        byo.store_generator(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"0" * 100))
    assert info.value.field == "generator"
    data = module_file.read_bytes()
    with pytest.raises(SpecError, match="over the"):
        byo.store_generator(io.BytesIO(data), limit=len(data) - 1)
    assert list((tmp_path / "store").iterdir()) == []  # nothing half-written is left
    path, size = byo.store_generator(io.BytesIO(data), limit=len(data))
    assert path.read_bytes() == data and size == len(data)
    with pytest.raises(SpecError, match="lacks") as info:
        byo.parse_manifest(json.dumps({"classes": ["a"]}).encode())
    assert info.value.field == "manifest"
