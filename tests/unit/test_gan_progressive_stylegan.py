"""Progressive GAN and StyleGAN2 builders: shapes, ranges, schedule, fade-in, truncation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ml.networks.gan.base import DiscriminatorOutput, GanModels
from ml.networks.gan.progressive import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStd,
    build_progan,
    progressive_schedule,
)
from ml.networks.gan.stylegan2 import build_stylegan2, path_length_penalty

TINY = {"base_channels": 64, "max_channels": 8}
Z = 8


def _progan(resolution: int, n_classes: int, **kw: object) -> GanModels:
    return build_progan(resolution, n_classes, z_dim=Z, kimg_per_phase=1.0, **TINY, **kw)


def _stylegan(resolution: int, n_classes: int, **kw: object) -> GanModels:
    return build_stylegan2(resolution, n_classes, z_dim=Z, w_dim=Z, mapping_layers=2, **TINY, **kw)


def _inputs(n_classes: int, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, Z), torch.randint(0, n_classes, (batch,))


@pytest.mark.parametrize("build", [_progan, _stylegan], ids=["progan", "stylegan2"])
@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("n_classes", [1, 3])
def test_shapes_and_ranges(build, resolution: int, n_classes: int) -> None:
    torch.manual_seed(0)
    models = build(resolution, n_classes)
    assert models.resolution == resolution and models.n_classes == n_classes
    z, labels = _inputs(n_classes)
    models.generator.train()
    fake = models.generator(z, labels)
    assert fake.shape == (4, 1, resolution, resolution) and torch.isfinite(fake).all()
    out = models.discriminator(fake, labels)
    assert isinstance(out, DiscriminatorOutput) and out.class_logits is None
    assert out.logits.shape == (4,) and torch.isfinite(out.logits).all()
    models.generator.eval()
    with torch.no_grad():
        sample = models.generator(z, labels)
    assert sample.min() >= -1.0 and sample.max() <= 1.0
    # Odd batch sizes go through minibatch stddev.
    assert models.discriminator(fake[:3], labels[:3]).logits.shape == (3,)


@pytest.mark.parametrize("build", [_progan, _stylegan], ids=["progan", "stylegan2"])
def test_conditioning_matters_and_unconditional_ignores_labels(build) -> None:
    torch.manual_seed(0)
    z = torch.randn(2, Z)
    cond = build(16, 3)
    cond.generator.eval()
    a = cond.generator(z, torch.tensor([0, 0]))
    b = cond.generator(z, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert not torch.allclose(
        cond.discriminator(x, torch.tensor([0, 0])).logits,
        cond.discriminator(x, torch.tensor([2, 2])).logits,
    )
    plain = build(16, 1)
    plain.generator.eval()
    assert torch.equal(plain.generator(z, torch.tensor([0, 0])), plain.generator(z, None))


@pytest.mark.parametrize("build", [_progan, _stylegan], ids=["progan", "stylegan2"])
def test_gradients_flow_through_both_networks(build) -> None:
    torch.manual_seed(0)
    models = build(16, 3)
    models.generator.train()
    z, labels = _inputs(3)
    models.discriminator(models.generator(z, labels), labels).logits.mean().backward()
    for net in (models.generator, models.discriminator):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        assert all(torch.isfinite(g).all() for g in grads)


def test_progan_hyperparameters() -> None:
    models = _progan(32, 2)
    assert models.loss == "wgan-gp" and models.gp_weight == 10.0 and models.d_steps == 1
    assert models.optimizer == (1e-3, 1e-3, 0.0, 0.99)
    assert models.schedule is not None and models.notes["drift_epsilon"] == 0.001


def test_progressive_schedule_phases() -> None:
    # 4 levels (4 -> 32), one kimg per phase: stabilise 4x4, then fade/stabilise per level.
    assert progressive_schedule(0.0, 1.0, 4) == (0, 1.0)
    assert progressive_schedule(0.99, 1.0, 4) == (0, 1.0)
    assert progressive_schedule(1.0, 1.0, 4) == (1, 0.0)
    assert progressive_schedule(1.25, 1.0, 4) == (1, 0.25)
    assert progressive_schedule(2.5, 1.0, 4) == (1, 1.0)
    assert progressive_schedule(3.5, 1.0, 4) == (2, 0.5)
    assert progressive_schedule(6.0, 1.0, 4) == (3, 1.0)
    assert progressive_schedule(1e6, 1.0, 4) == (3, 1.0)


def test_schedule_sets_both_networks_and_output_shape_is_constant() -> None:
    torch.manual_seed(0)
    models = _progan(32, 1)
    g, d = models.generator, models.discriminator
    z, labels = _inputs(1)
    assert (g.level, g.alpha) == (0, 1.0)  # the builder starts at the first level
    seen = []
    for kimg in (0.0, 1.5, 3.0, 5.5, 9.0):
        models.schedule(kimg)
        assert (g.level, g.alpha) == (d.level, d.alpha)
        seen.append((g.level, g.alpha))
        fake = g(z, labels)
        assert fake.shape == (4, 1, 32, 32)
        assert d(fake, labels).logits.shape == (4,)
    assert seen == [(0, 1.0), (1, 0.5), (2, 0.0), (3, 0.5), (3, 1.0)]
    # At level 0 the 32x32 output is a nearest-neighbour upsampled 4x4 image.
    models.schedule(0.0)
    fake = g(z, labels)
    assert torch.equal(fake, F.interpolate(fake[:, :, ::8, ::8], scale_factor=8))


def test_start_resolution_8() -> None:
    models = _progan(16, 1, start_resolution=8)
    g = models.generator
    assert g.n_levels == 2 and g.current_resolution == 8
    fake = g(*_inputs(1))
    assert torch.equal(fake, F.interpolate(fake[:, :, ::2, ::2], scale_factor=2))


@pytest.mark.parametrize("n_classes", [1, 3])
def test_fade_in_is_continuous(n_classes: int) -> None:
    torch.manual_seed(0)
    models = _progan(32, n_classes)
    g, d = models.generator, models.discriminator
    z, labels = _inputs(n_classes)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    for level in (1, 2, 3):
        g.set_level(level - 1, 1.0)
        d.set_level(level - 1, 1.0)
        before_g, before_d = g(z, labels), d(x, labels).logits
        g.set_level(level, 0.0)
        d.set_level(level, 0.0)
        torch.testing.assert_close(g(z, labels), before_g, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d(x, labels).logits, before_d, rtol=1e-5, atol=1e-5)
        g.set_level(level, 0.5)
        assert not torch.allclose(g(z, labels), before_g)


def test_level_survives_state_dict() -> None:
    models = _progan(16, 1)
    models.schedule(1.5)
    fresh = _progan(16, 1)
    fresh.generator.load_state_dict(models.generator.state_dict())
    assert (fresh.generator.level, fresh.generator.alpha) == (1, 0.5)


def test_equalised_learning_rate() -> None:
    torch.manual_seed(0)
    conv = EqualizedConv2d(32, 64, 3)
    assert abs(conv.weight.std().item() - 1.0) < 0.05
    assert conv.scale == pytest.approx(2**0.5 / (32 * 9) ** 0.5)
    x = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1))
    lin = EqualizedLinear(256, 64)
    assert abs(lin.weight.std().item() - 1.0) < 0.05
    v = torch.randn(3, 256)
    torch.testing.assert_close(lin(v), v @ (lin.weight * 256**-0.5).T + lin.bias)
    slow = EqualizedLinear(256, 64, lr_mul=0.01)  # stored 100x larger, applied 100x smaller
    assert abs(slow.weight.std().item() - 100.0) < 5.0
    assert slow(v).std().item() == pytest.approx(1.0, rel=0.2)


def test_minibatch_std_adds_one_channel_equal_within_group() -> None:
    x = torch.randn(8, 3, 4, 4)
    y = MinibatchStd(4)(x)
    assert y.shape == (8, 4, 4, 4)
    stat = y[:, 3]
    assert torch.equal(stat[0], stat[2]) and torch.equal(stat[0], stat[6])  # same group
    assert torch.all(MinibatchStd(4)(torch.ones(4, 3, 4, 4))[:, 3] < 1e-3)  # no variation


def test_stylegan2_hyperparameters() -> None:
    models = _stylegan(32, 1, batch=16)
    assert models.loss == "non-saturating" and models.r1_interval == 16
    assert models.r1_gamma == pytest.approx(0.0002 * 32**2 / 16)
    assert models.optimizer == (0.0025, 0.0025, 0.0, 0.99)


@pytest.mark.parametrize("n_classes", [1, 3])
def test_truncation_psi_zero_gives_the_class_average(n_classes: int) -> None:
    torch.manual_seed(0)
    models = _stylegan(16, n_classes)
    g = models.generator
    g.train()
    g(torch.randn(64, Z), torch.randint(0, n_classes, (64,)))  # move w_avg off zero
    g.eval()
    for layer in g.synthesis.layers:
        torch.nn.init.constant_(layer.noise_strength, 0.5)  # noise on, but fixed
    labels = torch.zeros(4, dtype=torch.long)
    a = g(torch.randn(4, Z), labels, truncation_psi=0.0, noise_mode="const")
    b = g(torch.randn(4, Z), labels, truncation_psi=0.0, noise_mode="const")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, a[:1].expand_as(a))
    c = g(torch.randn(4, Z), labels, truncation_psi=1.0, noise_mode="const")
    assert not torch.allclose(a, c)
    assert not torch.equal(
        g(torch.randn(4, Z), labels, noise_mode="random"),
        g(torch.randn(4, Z), labels, noise_mode="const"),
    )


def test_w_avg_updates_in_train_mode_only() -> None:
    torch.manual_seed(0)
    models = _stylegan(16, 3)
    g = models.generator
    z = torch.randn(8, Z)
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1])
    g.eval()
    g(z, labels)
    assert torch.count_nonzero(g.mapping.w_avg) == 0
    g.train()
    g(z, labels)
    w_avg = g.mapping.w_avg
    assert w_avg[0].abs().sum() > 0 and w_avg[1].abs().sum() > 0
    assert torch.count_nonzero(w_avg[2]) == 0  # class 2 not in the batch


def test_demodulation_keeps_activations_finite() -> None:
    torch.manual_seed(0)
    models = _stylegan(32, 1)
    g = models.generator
    for layer in g.synthesis.layers:
        with torch.no_grad():
            layer.conv.weight.mul_(1e3)  # huge weights: demodulation must undo them
    g.train()
    img = g(torch.randn(4, Z) * 100, None)
    assert torch.isfinite(img).all() and img.abs().max() < 1e3


def test_path_length_penalty() -> None:
    torch.manual_seed(0)
    models = _stylegan(16, 3)
    g = models.generator
    z, labels = _inputs(3)
    penalty, mean = path_length_penalty(g, z, labels, 0.0)
    assert penalty.ndim == 0 and torch.isfinite(penalty) and mean > 0 and not mean.requires_grad
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.synthesis.parameters())
    assert torch.count_nonzero(g.mapping.w_avg) == 0  # regularisation does not move w_avg
    _, again = path_length_penalty(g, z, labels, mean)
    assert again != mean
