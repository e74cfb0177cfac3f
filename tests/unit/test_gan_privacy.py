"""DP-SGD on the discriminator: epsilon grows with the steps and shrinks with the noise, a
resumed run spends exactly what an uninterrupted one does, incompatible families and options
are refused, and the optimiser clips every example's gradient before adding noise."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_fixtures import write_two_sided
from opacus.accountants.analysis import rdp as rdp_analysis

from ml.networks.gan import build_gan
from ml.progress import Stopped
from ml.training.gan import GanConfig, train_gan
from ml.training.gan_losses import discriminator_loss
from ml.training.privacy import (
    RDP_ORDERS,
    PrivateDiscriminator,
    default_delta,
    fake_term,
    privacy_spent,
    private_discriminator,
    real_term,
)

N_TRAIN = 20  # _dataset keeps 4 of its 24 images for the test split

# torch warns whenever a full backward hook (Opacus') sits on a layer whose input needs no
# gradient - D's first layer, on every step. Expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_sided(tmp_path_factory.mktemp("dp") / "data")


def _config(**overrides: object) -> GanConfig:
    base = GanConfig(
        arch="dcgan",
        resolution=16,
        batch_size=8,
        kimg=0.048,
        tick_kimg=0.016,
        snapshot_ticks=1,
        arch_options={"base_channels": 8},
        dp_noise_multiplier=1.0,
        dp_max_grad_norm=1.0,
    )
    return replace(base, **overrides)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_private_run_logs_an_epsilon_that_grows_every_tick(data: Path, tmp_path: Path) -> None:
    result = train_gan(data, tmp_path, _config())
    ticks = _lines(tmp_path / "metrics.jsonl")
    eps = [t["epsilon"] for t in ticks]
    assert len(eps) == 3 and all(math.isfinite(e) and e > 0 for e in eps)
    assert all(a < b for a, b in itertools.pairwise(eps))
    assert [s["epsilon"] for s in _lines(tmp_path / "snapshots.jsonl")] == eps
    assert result.epsilon == eps[-1]
    # delta = min(1e-5, n^-1.1); for 20 images the 1e-5 cap applies.
    assert result.delta == default_delta(N_TRAIN) == 1e-5
    assert default_delta(10**6) == pytest.approx(1e6**-1.1)

    # The accountant saw one step per D step at q = B / n. The RDP cross-check is what Opacus'
    # RDP analysis (Mironov 2017) gives for that history; the headline is PRV's, below it.
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    history = state["privacy"]["accountant"]["history"]
    assert history == [(1.0, 8 / N_TRAIN, 6)]
    rdp = rdp_analysis.compute_rdp(q=8 / N_TRAIN, noise_multiplier=1.0, steps=6, orders=RDP_ORDERS)
    expected, _ = rdp_analysis.get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=1e-5)
    assert result.epsilon_rdp == pytest.approx(expected)
    assert result.accountant == "prv"
    assert result.epsilon == privacy_spent(history, 1e-5).epsilon < expected
    assert {t["accountant"] for t in ticks} == {"prv"}
    assert all(t["epsilon"] < t["epsilon_rdp"] for t in ticks)

    # D trained per sample: no BatchNorm statistics in the private discriminator.
    assert not any("running_mean" in key for key in state["discriminator"])
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["privacy"]["sample_rate"] == pytest.approx(0.4)
    assert "PRV accountant" in run["privacy"]["mechanism"]
    assert run["privacy"]["delta"] == 1e-5


def test_more_noise_spends_less_epsilon_for_the_same_steps(data: Path, tmp_path: Path) -> None:
    low = train_gan(data, tmp_path / "low", _config(kimg=0.016, dp_noise_multiplier=0.8))
    high = train_gan(data, tmp_path / "high", _config(kimg=0.016, dp_noise_multiplier=2.0))
    assert low.kimg == high.kimg
    assert 0 < high.epsilon < low.epsilon  # type: ignore[operator]


def test_a_resumed_run_continues_epsilon_and_weights(data: Path, tmp_path: Path) -> None:
    config = _config(kimg=0.064, augment="diffaugment")
    straight = train_gan(data, tmp_path / "straight", config)
    snapshots = tmp_path / "resumed" / "snapshots.jsonl"

    def stop_after_two_snapshots() -> bool:
        return snapshots.exists() and len(snapshots.read_text().splitlines()) >= 2

    with pytest.raises(Stopped):
        train_gan(data, tmp_path / "resumed", config, should_stop=stop_after_two_snapshots)
    resumed = train_gan(data, tmp_path / "resumed", config)
    assert resumed.epsilon == straight.epsilon  # the accountant's history was restored
    eps = [t["epsilon"] for t in _lines(tmp_path / "resumed" / "metrics.jsonl")]
    assert eps == [t["epsilon"] for t in _lines(tmp_path / "straight" / "metrics.jsonl")]
    assert len(eps) == 4
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    # The Poisson draws and the noise come from checkpointed generators: bit-identical.
    for part in ("generator", "discriminator", "generator_ema"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=key)


TINY = {
    "wgan-gp": {"base_channels": 8},
    "sngan": {"base_channels": 8},
    "progan": {"base_channels": 128, "max_channels": 16, "kimg_per_phase": 0.016},
    "stylegan2": {
        "base_channels": 128,
        "max_channels": 16,
        "z_dim": 32,
        "w_dim": 32,
        "mapping_layers": 2,
    },
}


@pytest.mark.parametrize(
    ("arch", "reason"),
    [
        ("wgan-gp", "second-order"),
        ("progan", "second-order"),
        ("sngan", "spectral normalisation"),
    ],
)
def test_families_dp_cannot_train_are_refused(
    arch: str, reason: str, data: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=reason):
        train_gan(data, tmp_path, _config(arch=arch, arch_options=TINY[arch]))
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"augment": "ada"}, "ADA"),
        ({"fid_features": "inception", "fid_patience": 2}, "early stopping"),
        ({"dp_noise_multiplier": 0.0}, "positive"),
        ({"dp_max_grad_norm": -1.0}, "positive"),
        ({"dp_delta": 1.5}, "dp_delta"),
        ({"batch_size": 32}, "must not exceed"),
    ],
)
def test_options_that_would_leak_are_refused(
    overrides: dict, message: str, data: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        train_gan(data, tmp_path, _config(**overrides))


def test_private_training_is_single_process_only(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="multiple processes"):
        train_gan(data, tmp_path, _config())


def _private(max_grad_norm: float, noise: float = 0.0, n_train: int = 10):
    torch.manual_seed(0)
    models = build_gan("dcgan", 16, 2, base_channels=8)
    d = private_discriminator(models, "dcgan")
    models.discriminator = d
    # lr 0: the step leaves the weights, and p.grad, for the test to read.
    opt = torch.optim.SGD(d.parameters(), lr=0.0)
    dp = PrivateDiscriminator(
        d,
        opt,
        noise_multiplier=noise,
        max_grad_norm=max_grad_norm,
        batch_size=4,
        n_train=n_train,
        delta=1e-5,
    )
    real = torch.rand(4, 1, 16, 16) * 2 - 1
    fake = torch.rand(4, 1, 16, 16) * 2 - 1
    labels = torch.tensor([0, 1, 1, 0])
    return models, d, dp, real, fake, labels


@pytest.mark.filterwarnings("ignore:Optimal order is the smallest alpha")  # sigma = 0
def test_every_example_gradient_is_clipped_before_the_noise() -> None:
    clip = 0.05
    models, d, dp, real, _, labels = _private(clip)
    params = dp.optimizer.params
    real_term(models, dp.module(real, labels), labels).backward()
    per_sample = torch.cat([p.grad_sample.flatten(1) for p in params], dim=1)  # (B, P)
    norms = per_sample.norm(dim=1)
    assert norms.min() > clip  # clipping binds for every example

    # Row i is example i's own gradient: GroupNorm keeps examples apart (BatchNorm would not).
    with dp.hooks_off():
        d.zero_grad()
        real_term(models, d(real[2:3], labels[2:3]), labels[2:3]).backward()
    alone = torch.cat([p.grad.flatten() for p in params])
    torch.testing.assert_close(per_sample[2], alone, rtol=1e-4, atol=1e-6)

    assert dp.optimizer.pre_step()  # clip, sum, add N(0, 0), divide by the expected batch
    grad = torch.cat([p.grad.flatten() for p in params])
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)
    clipped = per_sample * factors[:, None]
    assert clipped.norm(dim=1).max() <= clip * (1 + 1e-5)
    torch.testing.assert_close(grad, clipped.sum(0) / 4, rtol=1e-5, atol=1e-7)
    assert dp.steps == 1 and dp.epsilon() == math.inf  # no noise: no privacy


def test_a_private_step_is_the_noised_real_term_plus_the_public_fake_term() -> None:
    # Clipping that never binds and no noise: the step's gradient must be the ordinary
    # gradient of D's loss, whose real and fake terms were split for the privacy analysis.
    models, d, dp, real, fake, labels = _private(max_grad_norm=1e6)
    stats = dp.step(models, real, labels, fake, labels)
    got = torch.cat([p.grad.flatten() for p in dp.optimizer.params])
    with dp.hooks_off():
        d.zero_grad()
        loss, reference = discriminator_loss(models, real, fake, labels, step=1)
        loss.backward()
        split = real_term(models, d(real, labels), labels) + fake_term(
            models, d(fake, labels), labels
        )
    want = torch.cat([p.grad.flatten() for p in dp.optimizer.params])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert stats["loss_d"] == pytest.approx(reference["loss_d"], rel=1e-5)
    assert split.item() == pytest.approx(reference["loss_d"], rel=1e-5)


def test_poisson_sampling_and_the_empty_draw() -> None:
    models, _, dp, _, fake, labels = _private(max_grad_norm=1.0, noise=1.0, n_train=20)
    gen = torch.Generator().manual_seed(0)
    sizes = []
    for _ in range(2000):
        positions = dp.poisson_positions(gen)
        assert positions.unique().numel() == positions.numel()  # without replacement
        sizes.append(positions.numel())
    # Each of 20 images with probability 4/20: batch sizes are Binomial(20, 0.2).
    assert np.mean(sizes) == pytest.approx(4.0, abs=0.15) and len(set(sizes)) > 5
    empty = torch.zeros(0, 1, 16, 16)
    dp.step(models, empty, labels[:0], fake, labels)
    assert dp.steps == 1 and dp.epsilon() > 0  # an empty draw is still a noised, counted step
