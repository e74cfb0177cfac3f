"""The loop's DCGAN step does the maths of the plain DCGAN loop (pytorch/examples' dcgan/main.py:
D on reals, D on detached fakes, Adam step; G through the updated D, Adam step), however it is
arranged for speed: one backward for both D terms, no D weight gradients in the G step, and the
channels-last memory format. bench/gan_throughput.py times the same step against that loop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from gan_fixtures import write_two_sided
from torch import nn

from ml.data.training_images import TrainingImages
from ml.training.ema import ema_beta, make_ema, update_ema
from ml.training.gan import EMA_RAMPUP, GanConfig, _augmenter, _draw, _Run, _train_step

STEPS = 2  # the second step starts from Adam moments and BatchNorm statistics of the first


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingImages:
    return TrainingImages(write_two_sided(tmp_path_factory.mktemp("gan-eq") / "data"), 16)


def _run(data: TrainingImages, **overrides: object) -> _Run:
    torch.manual_seed(0)  # the networks' initial weights
    config = GanConfig(
        arch="dcgan",
        resolution=16,
        batch_size=8,
        arch_options={"base_channels": 8},
        **overrides,  # type: ignore[arg-type]
    )
    return _Run(data, config, torch.device("cpu"))


def _ours(run: _Run, data: TrainingImages) -> None:
    augment = _augmenter(run)
    for _ in range(STEPS):
        _train_step(run, data, augment)
        run.nimg += run.config.batch_size


def _plain(run: _Run, data: TrainingImages) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The examples' loop on copies of `run`'s initial networks, fed the batches `_ours` draws:
    separate backward passes, BCE on sigmoid outputs, D weight gradients computed in G's step;
    plus the StyleGAN2-ADA average generator with its ramp-up, as the loop keeps one."""
    g = copy.deepcopy(run.g).to(memory_format=torch.contiguous_format)
    d = copy.deepcopy(run.d).to(memory_format=torch.contiguous_format)
    ema = make_ema(g)
    batch, ema_kimg = run.config.batch_size, run.config.ema_kimg or 1.0
    lr_g, lr_d, beta1, beta2 = run.models.optimizer
    opt_g = torch.optim.Adam(g.parameters(), lr=lr_g, betas=(beta1, beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_d, betas=(beta1, beta2))
    criterion = nn.BCELoss()
    rng_state = run.rng.get_state()
    for step in range(STEPS):
        real, labels, z, _ = _draw(run, data)
        ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
        d.zero_grad()
        criterion(torch.sigmoid(d(real, labels).logits), ones).backward()
        fake = g(z, labels)
        criterion(torch.sigmoid(d(fake.detach(), labels).logits), zeros).backward()
        opt_d.step()
        g.zero_grad()
        criterion(torch.sigmoid(d(fake, labels).logits), ones).backward()
        opt_g.step()
        update_ema(ema, g, ema_beta(batch, min(ema_kimg, step * batch * EMA_RAMPUP / 1000)))
    run.rng.set_state(rng_state)  # `_ours` draws the same batches again
    return g, d, ema


def _assert_same_state(ours: nn.Module, plain: nn.Module) -> None:
    theirs = plain.state_dict()
    for name, value in ours.state_dict().items():
        diff = (value.double() - theirs[name].double()).abs()
        # Adam moves each weight by about lr = 2e-4 times the sign of its gradient, so 1e-6
        # catches any gradient that differs in sign or scale. The exception is a weight whose
        # gradient is near zero (comparable to Adam's eps, 1e-8): there, summation-order
        # rounding (one backward or two, channels-last kernels) changes the step a little, so
        # a few such weights in a thousand may differ, never by more than the steps taken.
        assert (diff > 1e-6).float().mean().item() <= 1e-3, name
        assert diff.max().item() <= 2e-4 * STEPS, name


def test_dcgan_step_equals_the_plain_reference_loop(data: TrainingImages) -> None:
    run = _run(data)  # the defaults: channels-last, EMA, x-flips
    g, d, ema = _plain(run, data)
    _ours(run, data)
    _assert_same_state(run.d, d)  # weights and the three BatchNorm statistics updates
    _assert_same_state(run.g, g)
    assert run.g_ema is not None
    _assert_same_state(run.g_ema, ema)


def test_channels_last_changes_only_the_memory_format(data: TrainingImages) -> None:
    fast, plain = _run(data, channels_last=True), _run(data, channels_last=False)
    _ours(fast, data)
    _ours(plain, data)
    assert fast.d.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    for ours, theirs in ((fast.g, plain.g), (fast.d, plain.d), (fast.g_ema, plain.g_ema)):
        assert ours is not None and theirs is not None
        _assert_same_state(ours, theirs)
    # The losses the loop logs are functions of the same logits: D's real score agrees too.
    real, labels, _, _ = _draw(fast, data)
    fast.d.eval(), plain.d.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            F.softplus(-fast.d(real, labels).logits), F.softplus(-plain.d(real, labels).logits)
        )
