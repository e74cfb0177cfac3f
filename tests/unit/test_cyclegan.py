"""CycleGAN on tiny configs: network shapes, finite losses, a run that logs and snapshots, exact
resume after a stop, translation into an importable image set, and the job handler end to end.

Domain A is bright left halves, domain B bright right halves (16 px, two classes each), so a
translator has something to learn while every run stays well under a second per snapshot."""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.data.store import DatasetWriter
from ml.networks.cyclegan import (
    ImagePool,
    build_cyclegan,
    default_blocks,
    discriminator_loss,
    generator_losses,
    patch_grid,
    receptive_field,
)
from ml.progress import Stopped
from ml.training.cyclegan import CycleGanConfig, train_cyclegan, translate_images
from workers.translate import translate

TINY = {"base_channels": 4, "n_blocks": 1, "d_layers": 2}


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    # One thread: on a busy 2-core machine intra-op threads contend and tiny convolutions get
    # a hundred times slower. Module scope, so the module-scoped trained run gets it too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dataset(root: Path, side: int, n: int = 12) -> Path:
    """Bright `side` half (0 left, 1 right); labels 'big' / 'small' alternate; last 4 are test."""
    writer = DatasetWriter(root, (16,), n, label_names=("big", "small"))
    rng = np.random.default_rng(side)
    splits = {}
    for i in range(n):
        image = rng.uniform(0.0, 0.2, (16, 16))
        image[:, side * 8 : side * 8 + 8] += 0.4 + 0.3 * (i % 2)
        key = f"{'ab'[side]}{i:03d}"
        writer.add(
            key, f"p{side}-{i}", {"big": int(i % 2), "small": int(1 - i % 2)}, "0" * 64, image
        )
        splits[key] = "train" if i < n - 4 else "test"
    writer.finish(splits, fsync=False)
    return root


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cyclegan")
    return _dataset(root / "a", 0), _dataset(root / "b", 1)


def _config(**overrides: object) -> CycleGanConfig:
    base = CycleGanConfig(
        resolution=16,
        batch_size=2,
        kimg=0.008,  # 4 steps
        tick_kimg=0.004,
        snapshot_ticks=1,
        pool_size=3,  # fills after two steps, so the random swap runs (and must resume exactly)
        grid_images=3,
        **TINY,
    )
    return replace(base, **overrides)


@pytest.fixture(scope="module")
def trained(domains: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train_cyclegan(*domains, out, _config())
    return out


def test_generator_keeps_shape_and_patchgan_gives_a_grid() -> None:
    nets = build_cyclegan(32, base_channels=4, n_blocks=2)  # the paper's 3-layer 70x70 D
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = nets.g_ab(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0  # tanh output
    assert nets.d_a(x).shape == (2, 1, 2, 2) == (2, 1, patch_grid(32), patch_grid(32))
    assert receptive_field(3) == 70 and receptive_field(2) == 34
    assert patch_grid(256) == 30  # pix2pix's 30x30 grid of 70x70 patches at 256 px
    assert default_blocks(256) == 9 and build_cyclegan(128, base_channels=4).n_blocks == 6
    with pytest.raises(ValueError, match="no output"):
        build_cyclegan(16, d_layers=3)
    with pytest.raises(ValueError, match="multiple of 4"):
        build_cyclegan(18, d_layers=1)


def test_losses_are_finite_and_backpropagate() -> None:
    torch.manual_seed(0)
    nets = build_cyclegan(16, **TINY)
    a, b = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    total, stats, fake_b, fake_a = generator_losses(nets, a, b)
    assert set(stats) == {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "loss_g"}
    assert all(np.isfinite(v) for v in stats.values())
    total.backward()
    assert all(p.grad is not None for p in nets.g_ab.parameters())
    loss_d = discriminator_loss(nets.d_b, b, fake_b)
    assert torch.isfinite(loss_d) and fake_a.shape == a.shape
    _, no_identity, _, _ = generator_losses(nets, a, b, lambda_identity=0.0)
    assert "idt_a" not in no_identity


def test_image_pool_returns_past_fakes_once_full() -> None:
    pool, gen = ImagePool(2), torch.Generator().manual_seed(0)
    first = torch.zeros(2, 1, 4, 4)
    assert torch.equal(pool.query(first, gen), first)  # filling: the fakes pass through
    later = [pool.query(torch.full((1, 1, 4, 4), float(i + 1)), gen) for i in range(20)]
    assert any(float(x.mean()) == 0.0 for x in later)  # some draws hand back an old fake
    assert len(pool.images) == 2


def test_run_logs_snapshots_and_checkpoints(trained: Path) -> None:
    ticks = [json.loads(s) for s in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [t["tick"] for t in ticks] == [1, 2]
    assert all(np.isfinite(t["loss_g"]) and np.isfinite(t["loss_d_a"]) for t in ticks)
    shots = [json.loads(s) for s in (trained / "snapshots.jsonl").read_text().splitlines()]
    assert [s["grid"] for s in shots] == ["grid-0001.png", "grid-0002.png"]
    for key in ("cycle_a_l1", "cycle_a_psnr", "cycle_a_ssim", "cycle_b_ssim", "cycle_a_haarpsi"):
        assert np.isfinite(shots[-1][key])
    assert shots[-1]["n_eval_a"] == 4  # the test split
    grid = np.asarray(Image.open(trained / "grids" / "grid-0002.png"))
    assert grid.shape == (6 * 18 + 2, 3 * 18 + 2)  # 6 rows x 3 images of 16 px, 2 px gutters
    run = json.loads((trained / "run.json").read_text())
    assert run["code_version"] and run["eval_splits"] == ["test", "test"]
    assert run["dataset_a_hash"] != run["dataset_b_hash"] and run["patch_receptive_field"] == 34
    state = torch.load(trained / "checkpoint.pt", weights_only=False)
    assert state["counters"]["nimg"] == 8 and len(state["pool_a"]["images"]) == 3


def test_resume_after_a_stop_ends_with_the_same_weights(
    domains: tuple[Path, Path], trained: Path, tmp_path: Path
) -> None:
    config = _config()
    snapshots = tmp_path / "snapshots.jsonl"

    def stop_after_first_snapshot() -> bool:
        return snapshots.exists()

    with pytest.raises(Stopped):
        train_cyclegan(*domains, tmp_path, config, should_stop=stop_after_first_snapshot)
    assert len(snapshots.read_text().splitlines()) == 1
    resumed = train_cyclegan(*domains, tmp_path, config)
    assert resumed.kimg == pytest.approx(0.008) and resumed.snapshots == 2
    a = torch.load(trained / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    for net, weights in a["networks"].items():
        for key, value in weights.items():
            torch.testing.assert_close(b["networks"][net][key], value, rtol=0, atol=0, msg=key)
    for x, y in zip(a["pool_b"]["images"], b["pool_b"]["images"], strict=True):
        assert torch.equal(x, y)
    assert resumed.cycle == a["last_cycle"]
    logged = [json.loads(s)["tick"] for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2]
    with pytest.raises(ValueError, match="other datasets or config"):
        train_cyclegan(*domains, tmp_path, replace(config, seed=1))


def test_lr_decays_linearly_over_the_second_half(
    domains: tuple[Path, Path], tmp_path: Path
) -> None:
    train_cyclegan(*domains, tmp_path, _config(tick_kimg=0.002, snapshot_ticks=4))
    rates = [json.loads(s)["lr"] for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # Set before each step from the images seen so far (0, 2, 4, 6 of 8): flat, then 2e-4 * 2/4.
    assert rates == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])


def test_translate_writes_pngs_and_an_importable_manifest(
    domains: tuple[Path, Path], trained: Path, tmp_path: Path
) -> None:
    result = translate_images(trained / "checkpoint.pt", domains[0], tmp_path, split="test")
    assert result.n_images == 4 and result.per_class == {"big": 2, "small": 2}
    assert result.group == "cyclegan-a2b@0.008kimg"
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert [r["file"] for r in rows] == [f"a2b-{i:06d}.png" for i in range(4)]
    assert {r["source"] for r in rows} == {"synthetic"} and {r["group"] for r in rows} == {
        result.group
    }
    assert [r["label"] for r in rows] == ["small", "big", "small", "big"]  # rows 8..11 of A
    assert [r["source_key"] for r in rows] == ["a008", "a009", "a010", "a011"]
    assert Image.open(tmp_path / rows[0]["file"]).size == (16, 16)
    assert set(result.cycle) == {
        "cycle_l1", "cycle_psnr", "cycle_ssim", "cycle_ms_ssim", "cycle_ms_gmsd", "cycle_mdsi",
        "cycle_haarpsi",
    }  # fmt: skip
    back = translate_images(
        trained / "checkpoint.pt", domains[1], tmp_path / "b2a", direction="b2a", split=None
    )
    assert back.n_images == 12 and back.group.startswith("cyclegan-b2a@")


def never() -> bool:
    return False


def test_handler_trains_translates_and_zips(domains: tuple[Path, Path], tmp_path: Path) -> None:
    seen: list[float] = []
    params = {
        "dataset_a_path": str(domains[0]),
        "dataset_b_path": str(domains[1]),
        "config": asdict(_config(device="auto")),
    }
    result = translate(params, tmp_path, lambda done, total, msg: seen.append(done / total), never)
    json.dumps(result)  # the job row stores it as JSON
    assert result["kimg"] == pytest.approx(0.008) and result["n_translated"] == 4
    assert result["device"] == "cpu" or torch.cuda.is_available()
    assert result["group"] == "cyclegan-a2b@0.008kimg" and "cycle_a_ssim" in result["cycle"]
    with zipfile.ZipFile(result["zip"]) as zf:
        assert sorted(zf.namelist()) == [f"a2b-{i:06d}.png" for i in range(4)] + ["manifest.csv"]
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    # Run again on the same folder: training is already done, translation starts over.
    again = translate(params, tmp_path, lambda *_: None, never)
    assert again["n_translated"] == 4 and again["kimg"] == result["kimg"]
    with pytest.raises(ValueError, match="changed"):
        translate({**params, "dataset_b_hash": "0" * 64}, tmp_path, lambda *_: None, never)
