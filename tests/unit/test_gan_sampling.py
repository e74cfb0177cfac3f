"""Sampling a GAN run (issue 17): the best checkpoint by default and recorded, StyleGAN2 images
reproducible from their seed, truncation psi reported as ignored where it does nothing."""

from __future__ import annotations

import csv
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_fixtures import ConstantFeatures, write_two_sided
from PIL import Image

from app.gans.service import (
    _set_description,
    checkpoint_of,
    parse_sample_options,
    truncation_note,
)
from app.gans.views import checkpoint_choices, sample_view
from app.jobs.specs import SpecError
from app.models import Job
from app.web.templating import templates
from ml.networks.gan import ARCHS, build_gan
from ml.networks.gan_families import TRUNCATION_FAMILIES
from ml.sampling import sample_images, takes_truncation
from ml.training import checkpoint as ckpt
from ml.training.gan import GanConfig, train_gan
from ml.training.gan_config import BEST, CHECKPOINT

STYLEGAN = {"base_channels": 128, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2}


def _config(arch: str = "dcgan", **overrides: object) -> GanConfig:
    options = STYLEGAN if arch == "stylegan2" else {"base_channels": 8}
    base = GanConfig(
        arch=arch,
        resolution=16,
        batch_size=8,
        kimg=0.032,
        tick_kimg=0.016,
        snapshot_ticks=1,
        arch_options=dict(options),
    )
    return replace(base, **overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_sided(tmp_path_factory.mktemp("sampling") / "data")


@pytest.fixture(scope="module")
def stopped_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DCGAN stopped early on a FID plateau: best at snapshot 1, last at snapshot 3."""
    folder = tmp_path_factory.mktemp("stopped")
    extractor = folder / "flat.pt"
    torch.jit.script(ConstantFeatures()).save(str(extractor))
    config = _config(kimg=1.0, fid_features=str(extractor), fid_images=16, fid_patience=2)
    result = train_gan(data, folder / "run", config)
    assert result.stopped_early and result.best_kimg == pytest.approx(0.016)
    return folder / "run"


def _train_job(run: Path, arch: str = "dcgan") -> Job:
    return Job(id=3, type="train_gan", artefact_dir=str(run), params={"config": {"arch": arch}})


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_sampling_defaults_to_the_best_checkpoint_and_records_it(
    stopped_run: Path, tmp_path: Path
) -> None:
    job = _train_job(stopped_run)
    path, used = checkpoint_of(job)
    assert (path.name, used) == (BEST, "best")
    best = sample_images(path, tmp_path / "best", per_class=2)
    assert best.checkpoint_file == BEST and best.kimg == pytest.approx(0.016)
    assert best.checkpoint_fid == pytest.approx(0.0, abs=1e-6)  # snapshot 1's logged FID
    assert best.source == "dcgan@0.016kimg"

    # The last snapshot stays one option away, and is a different generator.
    path, used = checkpoint_of(job, "last")
    assert (path.name, used) == (CHECKPOINT, "last")
    last = sample_images(path, tmp_path / "last", per_class=2)
    assert last.checkpoint_file == CHECKPOINT and last.kimg == pytest.approx(0.048)
    assert last.checkpoint_sha256 != best.checkpoint_sha256
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(
            _pixels(tmp_path / "best").values(), _pixels(tmp_path / "last").values(), strict=True
        )
    )


def test_the_set_description_and_the_job_page_say_which_checkpoint(
    stopped_run: Path, tmp_path: Path
) -> None:
    best = sample_images(stopped_run / BEST, tmp_path, per_class=1)
    result = asdict(best)
    job = Job(
        id=7,
        type="sample",
        params={"train_job_id": 3, "truncation_psi": 1.0, "checkpoint_asked": "best"},
        result=result,
    )
    assert "dcgan@0.016kimg, best checkpoint (FID 0.0), psi 1" in _set_description(job, result)
    view = sample_view(job)
    assert view["checkpoint_used"] == "best" and "checkpoint_why" not in view
    html = templates.get_template("jobs/sample_provenance.html").render(job=job, sampled=view)
    assert "the <strong>best</strong> one" in html and "FID 0.0 at 0.016 kimg" in html


def test_a_run_without_a_best_checkpoint_samples_its_last(data: Path, tmp_path: Path) -> None:
    train_gan(data, tmp_path / "run", _config())  # no FID: no best.pt
    path, used = checkpoint_of(_train_job(tmp_path / "run"), "best")
    assert (path.name, used) == (CHECKPOINT, "last")
    result = asdict(sample_images(path, tmp_path / "set", per_class=1))
    job = Job(type="sample", params={"checkpoint_asked": "best"}, result=result)
    assert "no best checkpoint" in sample_view(job)["checkpoint_why"]


def test_checkpoint_choice_is_checked_and_the_form_offers_both(stopped_run: Path) -> None:
    assert parse_sample_options("s", 1).checkpoint == "best"
    assert parse_sample_options("s", 1, checkpoint="LAST").checkpoint == "last"
    with pytest.raises(SpecError, match=r"best \(lowest FID\) or last"):
        parse_sample_options("s", 1, checkpoint="middle")
    with pytest.raises(SpecError, match="no GAN checkpoint"):
        checkpoint_of(_train_job(stopped_run.parent / "nowhere"))

    snapshots = [
        {"snapshot": 1, "kimg": 0.016, "fid": 0.0},
        {"snapshot": 2, "kimg": 0.032, "fid": 0.0},
        {"snapshot": 3, "kimg": 0.048, "fid": 0.0},
    ]
    choices = checkpoint_choices(stopped_run, snapshots)
    assert choices == {"best": {"kimg": 0.016, "fid": 0.0}, "last": {"kimg": 0.048, "fid": 0.0}}
    html = templates.get_template("jobs/train_gan_snapshots.html").render(
        job=_train_job(stopped_run),
        snapshots=snapshots,
        run=None,
        checkpoints=choices,
        truncates=False,
        truncation_families="stylegan2",
        csrf_token="",
    )
    assert '<option value="best" selected>best: lowest FID (0.0 at 0.016 kimg)' in html
    assert '<option value="last">last: 0.048 kimg (FID 0.0)' in html
    assert "dcgan has no mapping network: truncation psi is ignored" in html


@pytest.fixture(scope="module")
def stylegan_checkpoint(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny StyleGAN2 whose averaged generator uses its noise inputs strongly (a
    few steps leave the learned strengths near their initial 0)."""
    folder = tmp_path_factory.mktemp("stylegan2")
    train_gan(data, folder, _config("stylegan2"))
    state = ckpt.load(folder / CHECKPOINT)
    for key in state["generator_ema"]:
        if key.endswith("noise_strength"):
            state["generator_ema"][key] = torch.tensor(0.5)
    ckpt.save_atomic(state, folder / CHECKPOINT)
    return folder / CHECKPOINT


def test_stylegan2_samples_are_bit_identical_from_their_seed(
    stylegan_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = stylegan_checkpoint
    first = sample_images(checkpoint, tmp_path / "a", per_class=4, seed=5)
    torch.manual_seed(123)  # the global random state must not matter
    sample_images(checkpoint, tmp_path / "b", per_class=4, seed=5)
    # The same seeds drawn in other batches: one image per call, and a shifted range.
    sample_images(checkpoint, tmp_path / "c", per_class=2, seed=7, batch_size=1)
    assert first.seeded_noise
    a, b, c = _pixels(tmp_path / "a"), _pixels(tmp_path / "b"), _pixels(tmp_path / "c")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert set(c) < set(a) and all(np.array_equal(a[k], c[k]) for k in c)
    # Different seeds give different images (the noise and z differ).
    assert not np.array_equal(a["class00-seed0000005.png"], a["class00-seed0000006.png"])


def test_stylegan2_noise_inputs_change_the_image(data: Path, tmp_path: Path) -> None:
    """The seeded noise is really used: the same z with another seed's noise differs."""
    g = build_gan("stylegan2", 16, 2, **STYLEGAN).generator.eval()
    for layer in g.synthesis.layers:
        torch.nn.init.constant_(layer.noise_strength, 0.5)
    z, labels = torch.randn(2, 32), torch.tensor([0, 1])
    shapes = g.noise_shapes()
    noise_a = [torch.randn(2, *s, generator=torch.Generator().manual_seed(1)) for s in shapes]
    noise_b = [torch.randn(2, *s, generator=torch.Generator().manual_seed(2)) for s in shapes]
    with torch.no_grad():
        assert torch.equal(g(z, labels, noise=noise_a), g(z, labels, noise=noise_a))
        assert not torch.allclose(g(z, labels, noise=noise_a), g(z, labels, noise=noise_b))
        with pytest.raises(ValueError, match="one per layer"):
            g(z, labels, noise=noise_a[:-1])


def test_truncation_families_are_those_with_a_mapping_network() -> None:
    for arch in ARCHS:
        generator = build_gan(arch, 16, 2, **({} if arch != "stylegan2" else STYLEGAN)).generator
        assert takes_truncation(generator) == (arch in TRUNCATION_FAMILIES), arch


def test_psi_is_reported_as_ignored_without_a_mapping_network(
    stopped_run: Path, data: Path, tmp_path: Path
) -> None:
    sample_images(stopped_run / BEST, tmp_path / "one", per_class=2)
    truncated = sample_images(
        stopped_run / BEST, tmp_path / "half", per_class=2, truncation_psi=0.5
    )
    assert not truncated.truncation_applied and truncated.truncation_psi == 0.5
    one, half = _pixels(tmp_path / "one"), _pixels(tmp_path / "half")
    assert all(np.array_equal(one[k], half[k]) for k in one)  # psi changed nothing
    rows = list(csv.DictReader((tmp_path / "half" / "manifest.csv").open()))
    assert {r["truncation_psi"] for r in rows} == {"1"}  # the psi the images were drawn with
    assert {r["checkpoint_sha256"] for r in rows} == {truncated.checkpoint_sha256}

    note = truncation_note("dcgan", 0.5)
    assert note is not None and "ignored" in note and "stylegan2" in note
    assert truncation_note("dcgan", 1.0) is None and truncation_note("stylegan2", 0.5) is None
    job = Job(type="sample", params={"checkpoint_asked": "best"}, result=asdict(truncated))
    assert sample_view(job)["truncation_note"] == note
    html = templates.get_template("jobs/sample_provenance.html").render(
        job=job, sampled=sample_view(job)
    )
    assert "Truncation psi 0.5 is ignored: dcgan has no mapping network" in html


def test_stylegan2_applies_psi_and_records_it(stylegan_checkpoint: Path, tmp_path: Path) -> None:
    result = sample_images(stylegan_checkpoint, tmp_path / "set", per_class=1, truncation_psi=0.5)
    assert result.truncation_applied
    rows = list(csv.DictReader((tmp_path / "set" / "manifest.csv").open()))
    assert {r["truncation_psi"] for r in rows} == {"0.5"}
