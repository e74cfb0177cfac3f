"""DP-SGD for StyleGAN2's discriminator: minibatch statistics over groups of one, per-example
gradients with R1 by torch.func, and a private run that logs epsilon at every tick."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from gan_fixtures import write_two_sided

from ml.networks.gan import build_gan
from ml.progress import Stopped
from ml.training.gan import GanConfig, GanResult, train_gan
from ml.training.gan_losses import discriminator_loss
from ml.training.privacy import (
    PrivateDiscriminator,
    per_sample_gradients,
    private_discriminator,
)

TINY = {"base_channels": 128, "max_channels": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2}


def _models():
    torch.manual_seed(0)
    models = build_gan("stylegan2", 16, 2, batch=4, **TINY)
    plain = models.discriminator
    models.discriminator = private_discriminator(models, "stylegan2")
    return models, plain


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1
    fake = torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1
    return real, fake, torch.tensor([0, 1, 1, 0])


def test_the_private_discriminator_keeps_examples_apart() -> None:
    models, plain = _models()
    real, _, labels = _batch()
    d = models.discriminator
    with torch.no_grad():
        together = d(real, labels).logits
        alone = torch.cat([d(real[i : i + 1], labels[i : i + 1]).logits for i in range(4)])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
        # The family's own D (minibatch std over groups of 4) mixes them: the check can fail.
        mixed = plain(real, labels).logits
        solo = torch.cat([plain(real[i : i + 1], labels[i : i + 1]).logits for i in range(4)])
        assert not torch.allclose(mixed, solo, atol=1e-4)


def test_per_example_gradients_with_r1_are_each_examples_own() -> None:
    models, _ = _models()
    real, _, labels = _batch()
    d = models.discriminator
    weight = models.r1_gamma / 2 * models.r1_interval
    grads, logits, r1 = per_sample_gradients(models, d, real, labels, weight)
    for i in range(4):
        # Example i alone, by plain autograd: softplus(-D(x)) + weight * ||grad_x D(x)||^2.
        x = real[i : i + 1].clone().requires_grad_(True)
        out = d(x, labels[i : i + 1]).logits
        (x_grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        penalty = x_grad.square().sum()
        want = torch.autograd.grad(F.softplus(-out).mean() + weight * penalty, list(d.parameters()))
        for (name, _), g in zip(d.named_parameters(), want, strict=True):
            torch.testing.assert_close(grads[name][i], g, rtol=1e-4, atol=1e-6, msg=name)
        assert logits[i].item() == pytest.approx(out.item(), rel=1e-5)
        assert r1[i].item() == pytest.approx(penalty.item(), rel=1e-4)


@pytest.mark.filterwarnings("ignore:Optimal order is the smallest alpha")  # sigma = 0
def test_a_private_r1_step_is_the_ordinary_step_when_nothing_binds() -> None:
    # No noise and a clipping norm that never binds: the private step's gradient must be the
    # gradient of D's ordinary loss with R1 (step 0 of the lazy schedule).
    models, _ = _models()
    real, fake, labels = _batch()
    d = models.discriminator
    opt = torch.optim.SGD(d.parameters(), lr=0.0)  # lr 0: p.grad stays for the test to read
    dp = PrivateDiscriminator(
        d,
        opt,
        noise_multiplier=0.0,
        max_grad_norm=1e6,
        batch_size=4,
        n_train=10,
        delta=1e-5,
        r1_gamma=models.r1_gamma,
        r1_interval=models.r1_interval,
    )
    stats = dp.step(models, real, labels, fake, labels, step=0)
    got = torch.cat([p.grad.flatten() for p in d.parameters()])
    d.zero_grad()
    loss, reference = discriminator_loss(models, real, fake, labels, step=0)
    loss.backward()
    want = torch.cat([p.grad.flatten() for p in d.parameters()])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert stats["r1"] == pytest.approx(reference["r1"], rel=1e-4)
    # The logged loss is the adversarial part (R1 is logged on its own, as "r1").
    r1_term = models.r1_gamma / 2 * reference["r1"] * models.r1_interval
    assert stats["loss_d"] == pytest.approx(reference["loss_d"] - r1_term, rel=1e-4)
    # Off the lazy schedule there is no R1 term.
    assert "r1" not in dp.step(models, real, labels, fake, labels, step=1)


# Three ticks, a snapshot every second one: tick 1 logs epsilon without a snapshot, and the
# checkpoint of tick 2 is where the resume test stops and starts again.
PRIVATE = GanConfig(
    arch="stylegan2",
    resolution=16,
    batch_size=8,
    kimg=0.048,
    tick_kimg=0.016,
    snapshot_ticks=2,
    arch_options=TINY,
    dp_noise_multiplier=1.0,
    dp_max_grad_norm=1.0,
)


@pytest.fixture(scope="module")
def private_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, GanResult]:
    """One uninterrupted private run, read by both tests below: (data, run folder, result)."""
    root = tmp_path_factory.mktemp("private-stylegan2")
    data = write_two_sided(root / "data")
    return data, root / "run", train_gan(data, root / "run", PRIVATE)


def test_a_private_stylegan2_run_logs_epsilon_every_tick(
    private_run: tuple[Path, Path, GanResult], tmp_path: Path
) -> None:
    data, run_dir, result = private_run
    ticks = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    eps = [t["epsilon"] for t in ticks]
    assert len(eps) == 3 and all(math.isfinite(e) and e > 0 for e in eps)
    assert all(a < b for a, b in itertools.pairwise(eps))
    assert result.epsilon == eps[-1] and result.accountant == "prv"
    assert "r1" in ticks[0]  # D step 0 is on R1's lazy schedule
    run = json.loads((run_dir / "run.json").read_text())
    assert "torch.func" in run["privacy"]["mechanism"]
    assert run["privacy"]["r1_gamma"] > 0
    # The same run with a different noise multiplier spends a different epsilon.
    louder = train_gan(data, tmp_path / "loud", replace(PRIVATE, kimg=0.016, dp_noise_multiplier=2))
    assert 0 < louder.epsilon < eps[0]  # type: ignore[operator]


def test_a_resumed_private_stylegan2_run_matches_an_uninterrupted_one(
    private_run: tuple[Path, Path, GanResult], tmp_path: Path
) -> None:
    data, straight_dir, straight = private_run
    log = tmp_path / "resumed" / "snapshots.jsonl"
    with pytest.raises(Stopped):
        train_gan(
            data,
            tmp_path / "resumed",
            PRIVATE,
            should_stop=lambda: log.exists() and len(log.read_text().splitlines()) >= 1,
        )
    resumed = train_gan(data, tmp_path / "resumed", PRIVATE)
    assert resumed.epsilon == straight.epsilon and resumed.accountant == straight.accountant
    a = torch.load(straight_dir / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert a["privacy"]["accountant"]["history"] == b["privacy"]["accountant"]["history"]
    for part in ("generator", "discriminator"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=key)
