"""The GAN training loop on tiny configs: every family trains, resume is exact, early stopping
fires on a plateau, a checkpoint samples into a set (PNG + manifest, DICOM marked synthetic)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from gan_fixtures import ConstantFeatures, write_two_sided

from ml.progress import Stopped
from ml.sampling import sample_images
from ml.training.early_stopping import FidPatience
from ml.training.gan import GanConfig, train_gan

TINY: dict[str, dict] = {
    "dcgan": {"base_channels": 8},
    "wgan-gp": {"base_channels": 8},
    "sngan": {"base_channels": 8},
    "acgan": {"base_channels": 8},
    "progan": {"base_channels": 128, "max_channels": 16, "kimg_per_phase": 0.016},
    "stylegan2": {
        "base_channels": 128,
        "max_channels": 16,
        "z_dim": 32,
        "w_dim": 32,
        "mapping_layers": 2,
    },
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_sided(tmp_path_factory.mktemp("gan") / "data")


def _config(arch: str = "dcgan", **overrides: object) -> GanConfig:
    base = GanConfig(
        arch=arch,
        resolution=16,
        batch_size=8,
        kimg=0.032,
        tick_kimg=0.016,
        snapshot_ticks=1,
        arch_options=dict(TINY[arch]),
    )
    return replace(base, **overrides)


@pytest.mark.parametrize("arch", list(TINY))
def test_every_family_trains_logs_and_snapshots(arch: str, data: Path, tmp_path: Path) -> None:
    result = train_gan(data, tmp_path, _config(arch))
    assert result.kimg == pytest.approx(0.032) and result.ticks == 2 and result.snapshots == 2
    assert result.class_names == ["left", "right"]
    ticks = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [t["tick"] for t in ticks] == [1, 2]
    assert all(np.isfinite(t["loss_d"]) and np.isfinite(t["loss_g"]) for t in ticks)
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == [
        "grid-0001.png",
        "grid-0002.png",
    ]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["dataset_hash"] and run["code_version"] and run["config"]["arch"] == arch


def test_resume_after_a_stop_ends_with_the_same_weights(data: Path, tmp_path: Path) -> None:
    config = _config(kimg=0.064, augment="diffaugment")
    straight = train_gan(data, tmp_path / "straight", config)

    snapshots = tmp_path / "resumed" / "snapshots.jsonl"

    def stop_after_two_snapshots() -> bool:
        return snapshots.exists() and len(snapshots.read_text().splitlines()) >= 2

    with pytest.raises(Stopped):
        train_gan(data, tmp_path / "resumed", config, should_stop=stop_after_two_snapshots)
    resumed = train_gan(data, tmp_path / "resumed", config)
    assert resumed.kimg == straight.kimg and resumed.snapshots == straight.snapshots
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for part in ("generator", "discriminator", "generator_ema"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=key)
    logged = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["tick"] for line in logged] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="another dataset or config"):
        train_gan(data, tmp_path / "resumed", replace(config, seed=1))


def test_early_stopping_fires_on_a_fid_plateau(data: Path, tmp_path: Path) -> None:
    # Features that ignore the image make FID constant: a plateau from the first snapshot.
    flat = torch.jit.script(ConstantFeatures())
    extractor = tmp_path / "flat.pt"
    flat.save(str(extractor))
    config = _config(kimg=1.0, fid_features=str(extractor), fid_images=16, fid_patience=2)
    result = train_gan(data, tmp_path / "run", config)
    assert result.stopped_early and result.snapshots == 3  # best at 1, no gain at 2 and 3
    assert result.kimg < 1.0 and result.best_kimg == pytest.approx(0.016)
    shots = [
        json.loads(line) for line in (tmp_path / "run" / "snapshots.jsonl").read_text().splitlines()
    ]
    assert [s["fid"] for s in shots] == [pytest.approx(0.0, abs=1e-6)] * 3
    assert (tmp_path / "run" / "best.pt").exists()


def test_patience_rule() -> None:
    rule = FidPatience(patience=2, min_delta=0.5)
    assert [rule.update(f, k) for k, f in enumerate([10.0, 9.0, 8.8, 8.7, 7.0])] == [
        False,
        False,
        False,
        True,
        False,
    ]
    assert FidPatience.from_state(rule.state_dict()) == rule
    assert not any(FidPatience(0).update(1.0, k) for k in range(5))


def test_sampling_writes_a_reproducible_set_with_synthetic_dicom(
    data: Path, tmp_path: Path
) -> None:
    train_gan(data, tmp_path / "run", _config())
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    first = sample_images(checkpoint, tmp_path / "a", per_class=3, seed=10, dicom=True)
    again = sample_images(checkpoint, tmp_path / "b", per_class=3, seed=10, classes=["right"])
    assert first.n_images == 6 and first.per_class == {"left": 3, "right": 3}
    assert first.source == "dcgan@0.032kimg"
    rows = list(csv.DictReader((tmp_path / "a" / "manifest.csv").open()))
    assert {r["label"] for r in rows} == {"left", "right"} and {r["source"] for r in rows} == {
        "synthetic"
    }
    # The same class and seed give the same image, whichever batch it was drawn in.
    same = "class01-seed0000010.png"
    assert (tmp_path / "a" / same).read_bytes() == (tmp_path / "b" / same).read_bytes()
    assert again.n_images == 3
    ds = pydicom.dcmread(next((tmp_path / "a" / "dicom").glob("*.dcm")))
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "SYNTHETIC"]
    assert ds.PatientID == "SYNTHETIC" and ds.ConversionType == "SYN"
    assert ds.pixel_array.shape == (16, 16)
    with pytest.raises(ValueError, match="unknown class"):
        sample_images(checkpoint, tmp_path / "c", per_class=1, classes=["middle"])


def test_cancel_stops_within_one_tick(data: Path, tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    asked: list[int] = []

    def cancelled_after_first_tick() -> bool:
        asked.append(1)
        return log.exists() and bool(log.read_text().strip())

    with pytest.raises(Stopped, match=r"stopped at 0\.02 kimg"):
        train_gan(data, tmp_path, _config(kimg=1.0), should_stop=cancelled_after_first_tick)
    # Asked before the run, every step and every write (tick line, snapshot), so the run ended
    # right after the tick that logged, before that tick's snapshot.
    assert len(log.read_text().splitlines()) == 1 and len(asked) == 5
    assert not (tmp_path / "snapshots.jsonl").exists()


class _SideClassifier(torch.nn.Module):
    """Logits (left, right) from which half of the image is brighter."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        half = images.shape[-1] // 2
        gap = images[..., :half].mean(dim=(1, 2, 3)) - images[..., half:].mean(dim=(1, 2, 3))
        return torch.stack([8.0 * gap, -8.0 * gap], dim=1)


def _domain_ce(checkpoint: Path, classifier: torch.nn.Module) -> float:
    from ml.sampling import load_generator

    generator, _ = load_generator(checkpoint)
    z = torch.randn(64, 128, generator=torch.Generator().manual_seed(5))
    labels = torch.arange(2).repeat(32)
    with torch.no_grad():
        logits = classifier(generator(z, labels))
    return torch.nn.functional.cross_entropy(logits, labels).item()


def test_domain_classifier_loss_pulls_fakes_towards_their_class(data: Path, tmp_path: Path) -> None:
    classifier = torch.jit.script(_SideClassifier())
    path = tmp_path / "side.pt"
    classifier.save(str(path))
    # No EMA: the generator itself is judged, not an average lagging behind it.
    plain = train_gan(data, tmp_path / "plain", _config(kimg=0.256, ema_kimg=None))
    guided = train_gan(
        data,
        tmp_path / "guided",
        _config(kimg=0.256, ema_kimg=None, domain_classifier=str(path), domain_lambda=20.0),
    )
    ticks = [json.loads(line) for line in (tmp_path / "guided" / "metrics.jsonl").open()]
    assert all(np.isfinite(t["domain_ce"]) for t in ticks)
    assert "domain_ce" not in (tmp_path / "plain" / "metrics.jsonl").read_text()
    ce_plain = _domain_ce(Path(plain.checkpoint), classifier)
    ce_guided = _domain_ce(Path(guided.checkpoint), classifier)
    assert ce_guided < 0.5 * ce_plain, (ce_guided, ce_plain)
    assert torch.jit.load(str(path)).state_dict() == {}  # frozen (and parameter-free here)


def test_domain_classifier_must_match_the_classes(data: Path, tmp_path: Path) -> None:
    wrong = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3)))
    path = tmp_path / "wrong.pt"
    wrong.save(str(path))
    with pytest.raises(ValueError, match=r"this run needs \(2, 2\) logits"):
        train_gan(data, tmp_path / "a", _config(domain_classifier=str(path), domain_lambda=1.0))
    with pytest.raises(ValueError, match="go together"):
        train_gan(data, tmp_path / "b", _config(domain_lambda=1.0))
