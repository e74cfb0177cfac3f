"""The DCGAN-based GAN families and their losses: shapes, gradients, penalties, conditioning."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ml.networks.gan import ARCHS, DiscriminatorOutput, GanModels, build_gan
from ml.training.gan_losses import discriminator_loss, generator_loss, real_sign

BATCH = 4


@pytest.fixture(autouse=True)
def _seeded_single_thread() -> Iterator[None]:
    # One thread: on a busy 2-core machine intra-op threads contend and runtimes explode.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _small(arch: str, resolution: int, n_classes: int) -> GanModels:
    return build_gan(arch, resolution, n_classes, z_dim=16, base_channels=8)


def _batch(m: GanModels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = torch.randn(BATCH, m.z_dim)
    labels = torch.randint(0, m.n_classes, (BATCH,))
    real = torch.rand(BATCH, 1, m.resolution, m.resolution) * 2 - 1
    return z, labels, real


# The families built in dcgan.py. ProGAN and StyleGAN2 follow Karras et al. (linear output,
# growing networks) and are tested in their own modules.
FAMILIES = ("dcgan", "wgan-gp", "sngan", "acgan")
CASES = [(a, r, n) for a in FAMILIES for r in (16, 32) for n in (1, 3)]


def test_registry_holds_the_dcgan_families() -> None:
    assert set(FAMILIES) <= set(ARCHS)
    assert build_gan("dcgan", 16, 1, base_channels=4).notes["arch"] == "dcgan"


@pytest.mark.parametrize(("arch", "resolution", "n_classes"), CASES)
def test_shapes_and_range(arch: str, resolution: int, n_classes: int) -> None:
    m = _small(arch, resolution, n_classes)
    z, labels, _ = _batch(m)
    with torch.no_grad():
        fake = m.generator(z, labels)
        out = m.discriminator(fake, labels)
    assert fake.shape == (BATCH, 1, resolution, resolution)
    assert fake.min() >= -1 and fake.max() <= 1
    assert isinstance(out, DiscriminatorOutput) and out.logits.shape == (BATCH,)
    if arch == "acgan":
        assert out.class_logits is not None and out.class_logits.shape == (BATCH, n_classes)
    else:
        assert out.class_logits is None
    assert (m.resolution, m.n_classes, m.z_dim) == (resolution, n_classes, 16)


@pytest.mark.parametrize(("arch", "resolution", "n_classes"), CASES)
def test_both_losses_reach_every_parameter(arch: str, resolution: int, n_classes: int) -> None:
    m = _small(arch, resolution, n_classes)
    z, labels, real = _batch(m)
    fake = m.generator(z, labels)

    loss_d, stats_d = discriminator_loss(m, real, fake.detach(), labels, step=1)
    loss_d.backward()
    assert torch.isfinite(loss_d) and math.isfinite(stats_d["loss_d"])
    assert all(p.grad is None for p in m.generator.parameters()), "fake must stay detached"
    d_params = dict(m.discriminator.named_parameters())
    missing = [n for n, p in d_params.items() if p.grad is None or not p.grad.isfinite().all()]
    assert missing == []
    assert sum(p.grad.abs().sum().item() for p in d_params.values()) > 0  # type: ignore[union-attr]

    loss_g, stats_g = generator_loss(m, fake, labels)
    loss_g.backward()
    assert math.isfinite(stats_g["loss_g"])
    g_params = dict(m.generator.named_parameters())
    missing = [n for n, p in g_params.items() if p.grad is None or not p.grad.isfinite().all()]
    assert missing == []
    assert (m.generator.embed is not None) == (n_classes > 1)
    if arch == "acgan":
        assert "aux_d" in stats_d and "aux_g" in stats_g


def test_family_settings_follow_their_papers() -> None:
    m = {a: _small(a, 16, 3) for a in FAMILIES}
    assert (m["dcgan"].loss, m["dcgan"].optimizer) == ("non-saturating", (2e-4, 2e-4, 0.5, 0.999))
    wgan = m["wgan-gp"]
    assert (wgan.loss, wgan.gp_weight, wgan.d_steps) == ("wgan-gp", 10.0, 5)
    assert wgan.optimizer == (1e-4, 1e-4, 0.0, 0.9)
    assert (m["sngan"].loss, m["sngan"].optimizer) == ("hinge", (2e-4, 2e-4, 0.0, 0.9))
    assert (m["acgan"].loss, m["acgan"].aux_weight) == ("non-saturating", 1.0)
    # Gulrajani et al.: no batch norm in the critic; none in SNGAN's D either.
    for arch in ("wgan-gp", "sngan"):
        assert not any(isinstance(x, nn.BatchNorm2d) for x in m[arch].discriminator.modules())
    assert any(isinstance(x, nn.BatchNorm2d) for x in m["dcgan"].discriminator.modules())


def test_spectral_norm_on_every_sngan_layer() -> None:
    d = _small("sngan", 32, 3).discriminator
    layers = [x for x in d.modules() if isinstance(x, nn.Conv2d | nn.Linear | nn.Embedding)]
    assert len(layers) >= 4 and all(parametrize.is_parametrized(x, "weight") for x in layers)
    for x in layers:
        sigma = torch.linalg.matrix_norm(x.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.1)
    plain = _small("dcgan", 32, 3).discriminator
    assert not any(parametrize.is_parametrized(x) for x in plain.modules())


def test_gradient_penalty_is_positive_finite_and_trains_the_critic() -> None:
    m = _small("wgan-gp", 16, 3)
    z, labels, real = _batch(m)
    with torch.no_grad():
        fake = m.generator(z, labels)
    loss, stats = discriminator_loss(m, real, fake, labels, step=0)
    assert stats["gp"] > 0 and math.isfinite(stats["gp"])
    assert loss.item() == pytest.approx(stats["d_fake"] - stats["d_real"] + 10 * stats["gp"])
    loss.backward()  # double backward through the penalty (create_graph=True)
    assert all(p.grad is not None for p in m.discriminator.parameters())


def test_r1_is_lazy_and_weighted_like_stylegan2() -> None:
    m = dataclasses.replace(_small("dcgan", 16, 3), r1_gamma=10.0, r1_interval=4)
    z, labels, real = _batch(m)
    with torch.no_grad():
        fake = m.generator(z, labels)
    loss_off, stats_off = discriminator_loss(m, real, fake, labels, step=3)
    loss_on, stats_on = discriminator_loss(m, real, fake, labels, step=8)
    assert "r1" not in stats_off
    assert stats_on["r1"] > 0 and math.isfinite(stats_on["r1"])
    # gamma / 2 * ||grad||^2 * interval on top of the same adversarial loss.
    assert (loss_on - loss_off).item() == pytest.approx(10.0 / 2 * stats_on["r1"] * 4, rel=1e-4)
    loss_on.backward()


class _SumCritic(nn.Module):
    """D(x) = sum of pixels: logits, input gradients and penalties are known in closed form."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DiscriminatorOutput:
        return DiscriminatorOutput(x.flatten(1).sum(1))


@pytest.mark.parametrize(
    ("loss", "expected_d", "expected_g"),
    [
        ("non-saturating", math.log1p(math.exp(-2)) + math.log1p(math.exp(-0.5)), 0.974077),
        ("hinge", 0.5, 0.5),
        ("wgan-gp", -2.5, 0.5),
    ],
)
def test_loss_values_on_a_known_critic(loss: str, expected_d: float, expected_g: float) -> None:
    n = 4 * 4
    m = GanModels(nn.Identity(), _SumCritic(), z_dim=1, n_classes=1, resolution=4, loss=loss)  # type: ignore[arg-type]
    real, fake = torch.full((2, 1, 4, 4), 2.0 / n), torch.full((2, 1, 4, 4), -0.5 / n)
    labels = torch.zeros(2, dtype=torch.long)
    loss_d, _ = discriminator_loss(m, real, fake, labels, step=1)
    loss_g, _ = generator_loss(m, fake, labels)
    assert loss_d.item() == pytest.approx(expected_d, rel=1e-5)
    assert loss_g.item() == pytest.approx(expected_g, rel=1e-5)


def test_penalties_on_a_known_critic() -> None:
    # grad_x sum(x) = 1 everywhere: ||grad||^2 = 16, GP = (4 - 1)^2 = 9.
    m = GanModels(nn.Identity(), _SumCritic(), 1, 1, 4, gp_weight=1.0, r1_gamma=2.0, r1_interval=1)
    x = torch.zeros(2, 1, 4, 4)
    _, stats = discriminator_loss(m, x, x, torch.zeros(2, dtype=torch.long), step=0)
    assert stats["gp"] == pytest.approx(9.0) and stats["r1"] == pytest.approx(16.0)


def test_real_sign_is_the_mean_sign_of_realness_logits() -> None:
    assert real_sign(DiscriminatorOutput(torch.tensor([1.0, -2.0, 3.0, 0.5]))) == 0.5
    m = GanModels(nn.Identity(), _SumCritic(), 1, 1, 4)
    real = torch.tensor([1.0, -1.0, 2.0, 3.0]).view(4, 1, 1, 1).expand(4, 1, 4, 4)
    _, stats = discriminator_loss(m, real, -real, torch.zeros(4, dtype=torch.long), step=1)
    assert stats["d_real_sign"] == 0.5  # reported on every D step for the ADA tuner


def test_unknown_arch_and_bad_resolution_raise() -> None:
    with pytest.raises(ValueError, match=r"dcgan.*sngan"):
        build_gan("biggan", 16, 1)
    for bad in (8, 48, 512):
        with pytest.raises(ValueError, match="power of two"):
            build_gan("dcgan", bad, 1)


def test_largest_resolution_builds_with_capped_widths() -> None:
    m = build_gan("sngan", 256, 2, z_dim=8, base_channels=2)
    assert m.notes["g_widths"] == [16, 16, 16, 8, 4, 2]  # 8x base at most (Radford et al.)
    with torch.no_grad():
        labels = torch.tensor([0, 1])
        out = m.discriminator(m.generator(torch.randn(2, 8), labels), labels)
    assert out.logits.shape == (2,)


def _two_class_images(labels: torch.Tensor, r: int) -> torch.Tensor:
    # Dark background; class 0 has a bright left half, class 1 a bright right half.
    x = torch.full((labels.shape[0], 1, r, r), -0.8)
    x[labels == 0, :, :, : r // 2] = 0.8
    x[labels == 1, :, :, r // 2 :] = 0.8
    return (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)


def test_conditional_dcgan_honours_the_class() -> None:
    r, batch = 16, 32
    m = build_gan("dcgan", r, 2, z_dim=32, base_channels=8)
    lr_g, lr_d, b1, b2 = m.optimizer
    opt_g = torch.optim.Adam(m.generator.parameters(), lr_g, betas=(b1, b2))
    opt_d = torch.optim.Adam(m.discriminator.parameters(), lr_d, betas=(b1, b2))
    # 500 steps: at 200-400 one seed in eight still had the mapping swapped or collapsed.
    for step in range(500):
        labels = torch.randint(0, 2, (batch,))
        fake = m.generator(torch.randn(batch, m.z_dim), labels)
        loss_d, _ = discriminator_loss(
            m, _two_class_images(labels, r), fake.detach(), labels, step=step
        )
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g, _ = generator_loss(m, fake, labels)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    m.generator.eval()
    z = torch.randn(64, m.z_dim)
    with torch.no_grad():
        imgs = [m.generator(z, torch.full((64,), c)) for c in (0, 1)]
    left_minus_right = [(x[..., : r // 2].mean() - x[..., r // 2 :].mean()).item() for x in imgs]
    # Real data: +1.6 for class 0, -1.6 for class 1; ask for a clear share of that gap.
    assert left_minus_right[0] - left_minus_right[1] > 0.5, left_minus_right
