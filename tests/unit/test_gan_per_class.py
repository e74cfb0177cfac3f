"""One GAN per class (seed 002, issue 17): a generator per label trained on that label's images
alone, progress across all of them, and sampling that draws each class from its own GAN."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_fixtures import write_two_sided
from PIL import Image

from app.gans.service import checkpoint_of
from app.models import Job
from ml.data.training_images import TrainingImages
from ml.generators.index import PER_CLASS_BEST, PER_CLASS_LAST
from ml.generators.one_class import one_class
from ml.sampling import load_generator, sample_images
from ml.training import checkpoint as ckpt
from ml.training.gan import GanConfig, train_gan
from ml.training.grid import to_uint8


def _config(**overrides: object) -> GanConfig:
    values: dict = {
        "arch": "dcgan",
        "resolution": 16,
        "batch_size": 8,
        "kimg": 0.032,
        "tick_kimg": 0.016,
        "snapshot_ticks": 1,
        "arch_options": {"base_channels": 8},
        "per_class": True,
        **overrides,
    }
    return GanConfig(**values)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_sided(tmp_path_factory.mktemp("per-class") / "data")


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, object]:
    folder = tmp_path_factory.mktemp("per-class-run") / "run"
    calls: list[tuple[float, float, str]] = []
    result = train_gan(data, folder, _config(), progress=lambda d, t, m: calls.append((d, t, m)))
    return folder, calls, result


def test_one_class_keeps_only_that_class_rows(data: Path) -> None:
    full = TrainingImages(data, 16, "train")
    right = one_class(full, "right")
    images, labels = right.all()
    assert right.class_names == ("right",) and labels.unique().tolist() == [0]
    assert len(right) == full.class_counts()[full.class_names.index("right")]
    # The bright half of every "right" image is its right half.
    assert (images[..., 8:].mean(dim=(1, 2, 3)) > images[..., :8].mean(dim=(1, 2, 3))).all()
    with pytest.raises(ValueError, match="no class"):
        one_class(full, "middle")


def test_each_class_trains_its_own_generator_in_its_own_folder(run: tuple, data: Path) -> None:
    folder, calls, result = run
    names = list(TrainingImages(data, 16, "train").class_names)
    assert result.class_names == names and [c["name"] for c in result.per_class] == names
    for i, name in enumerate(names):
        state = ckpt.load(folder / f"class-{i:02d}" / "checkpoint.pt", "cpu")
        assert state["class_names"] == [name] and state["config"]["only_class"] == name
        assert state["counters"]["nimg"] >= 32
    assert result.kimg == pytest.approx(sum(c["kimg"] for c in result.per_class))
    # Progress runs once over every class's images, never backwards, and names the class.
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and {t for _, t, _ in calls} == {2 * 32}
    assert done[-1] == 2 * 32 and any("(right)" in m for _, _, m in calls)
    assert json.loads((folder / "run.json").read_text())["class_names"] == names


def test_resuming_a_finished_per_class_run_trains_nothing_again(run: tuple, data: Path) -> None:
    folder, _, result = run
    before = (folder / "class-00" / "checkpoint.pt").stat().st_mtime_ns
    calls: list = []
    again = train_gan(data, folder, _config(), progress=lambda *a: calls.append(a))
    assert again.per_class == result.per_class and calls == []
    assert (folder / "class-00" / "checkpoint.pt").stat().st_mtime_ns == before


def test_sampling_draws_each_class_from_its_own_generator(run: tuple, tmp_path: Path) -> None:
    folder, _, _ = run
    job = Job(id=4, type="train_gan", artefact_dir=str(folder), params={"config": {}})
    assert checkpoint_of(job, "last") == (folder / PER_CLASS_LAST, "last")
    assert checkpoint_of(job, "best") == (folder / PER_CLASS_BEST, "best")
    out = tmp_path / "samples"
    result = sample_images(folder / PER_CLASS_LAST, out, per_class=3, seed=5)
    assert result.per_class == {"left": 3, "right": 3} and "per-class" in result.source
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert sorted(r["label"] for r in rows) == ["left"] * 3 + ["right"] * 3
    # Each image is what its own class's generator draws from the image's seed alone.
    for i, name in enumerate(("left", "right")):
        generator, state = load_generator(folder / f"class-{i:02d}" / "checkpoint.pt")
        for row in (r for r in rows if r["label"] == name):
            z = torch.randn(
                state["z_dim"], generator=torch.Generator().manual_seed(int(row["seed"]))
            )
            with torch.no_grad():
                expected = to_uint8(generator(z[None], torch.zeros(1, dtype=torch.long)))[0]
            assert np.array_equal(np.asarray(Image.open(out / row["file"])), expected)
    # The two generators are different networks: the same seed gives different images.
    left, right = (np.asarray(Image.open(out / f"class{k:02d}-seed0000005.png")) for k in (0, 1))
    assert not np.array_equal(left, right)
    # The set's hash names both checkpoints: retraining one class changes it.
    assert len({r["checkpoint_sha256"] for r in rows}) == 1


def test_per_class_refuses_a_domain_classifier() -> None:
    with pytest.raises(ValueError, match="per_class"):
        _config(domain_classifier="c.pt", domain_lambda=1.0).check()
