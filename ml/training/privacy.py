"""Differentially private GAN training: DP-SGD on the discriminator, with Opacus.

What is private. Only the discriminator D reads the training images, so only D's updates get
DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy"): per-example gradients
are clipped to L2 norm `max_grad_norm` (C), summed, and Gaussian noise N(0, (sigma C)^2) is
added before the optimiser step. The generator G only ever receives gradients through D (and
the average generator is a function of G), so by the post-processing property of DP
(Dwork & Roth 2014, prop. 2.1) G, its EMA and every image sampled from them inherit D's
(epsilon, delta) guarantee - the argument of DPGAN (Xie et al. 2018, "Differentially Private
Generative Adversarial Network"). Two things the loop must do for that argument to hold:

* G must never read private data: in a private run every fake (for D's step and G's) is
  drawn from public inputs only - `batch_size` latents and class labels uniform over the class
  names (the names are treated as public, their frequencies are not). The non-private loop
  conditions fakes on the real batch's labels instead, which would put private labels into G
  (and, through BatchNorm, into every fake of the batch and into G's running statistics);
* nothing else that reads real data may steer training: ADA (which tunes p from D's outputs
  on real images) and FID early stopping are refused, and `best.pt` (chosen by FID against
  the training images) is not written. Logged statistics (d_real, loss_d, FID) are *not*
  private: they are operator diagnostics, not part of the released model.

The fake-image term. D's loss is mean l_r(D(x_i)) + mean l_f(D(G(z_j))); both terms move the
same parameters, but only the first reads private data. With fakes from public inputs the
fake term's gradient is a function of the current networks and public randomness, i.e.
post-processing of the earlier private steps (adaptive composition), so it is computed by an
ordinary backward pass (per-sample hooks off) and added, unclipped and un-noised, to the
privatised real term:

    g = (sum_i clip_C(grad l_r(x_i)) + N(0, sigma^2 C^2 I)) / B  +  grad mean_j l_f(G(z_j)).

Only the real term is the sampled Gaussian mechanism, with sensitivity C per record. Noising
the fake term too (DPGAN clips and noises D's whole gradient) is sound but spends signal for
nothing; clipping (real_i, fake_i) pairs in one backward pass would be sound only if each fake
depended on its partner alone, which BatchNorm in G breaks.

Sampling. The accountant assumes Poisson sampling (each record in a batch independently with
probability q = batch_size / n_train), so that is what `poisson_positions` does - not the
fixed-size with-replacement draw of the non-private loop. Batch sizes therefore vary; the
summed gradient is divided by the *expected* batch size (Opacus' convention), so the actual
size is not released. An empty draw still takes a noised step, as the analysis assumes.

Accounting: Renyi DP of the sampled Gaussian mechanism (Mironov 2017, "Renyi Differential
Privacy"; Mironov, Talwar & Zhang 2019 for subsampling) composed over every D step, converted
to (epsilon, delta) with Balle et al. 2020's bound - Opacus' `RDPAccountant`.

Not supported, refused with ValueError: families whose D loss needs second-order gradients
(WGAN-GP's gradient penalty, StyleGAN2's R1; ProGAN uses WGAN-GP), since Opacus' per-sample
gradient hooks handle first-order gradients only (the penalties differentiate a gradient);
spectral normalisation (SNGAN), whose power-iteration buffers are updated inside the forward
pass and whose parametrised weights Opacus cannot clone. BatchNorm (DCGAN, AC-GAN) mixes
the examples of a batch, which breaks per-example sensitivity: it is replaced by GroupNorm
(Opacus' `ModuleValidator.fix`), so a DP DCGAN's D is a GroupNorm DCGAN. The noise comes
from torch's default generator (restored on resume), not from a cryptographically secure
one (Opacus' `secure_mode` needs torchcsprng).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ml.data.training_images import TrainingImages
from ml.networks.gan.base import DiscriminatorOutput, GanModels

# delta = min(1e-5, n^-1.1). delta must be well below 1/n: a mechanism that publishes each
# record with probability delta is (0, delta)-DP and leaks delta * n records on average
# (Dwork & Roth 2014, sec. 2.3). n^-1.1 keeps delta * n -> 0 as n grows; 1e-5 is the value
# of Abadi et al. 2016 and caps delta for the small datasets medical imaging often has.
DELTA_CAP = 1e-5
DELTA_EXPONENT = 1.1


def default_delta(n_train: int) -> float:
    return min(DELTA_CAP, float(n_train) ** -DELTA_EXPONENT)


def real_term(models: GanModels, out: DiscriminatorOutput, labels: torch.Tensor) -> torch.Tensor:
    """The part of D's loss that reads real images (mean over the batch)."""
    r = out.logits
    if models.loss == "non-saturating":
        loss = F.softplus(-r).mean()
    elif models.loss == "hinge":
        loss = F.relu(1 - r).mean()
    else:  # Wasserstein
        loss = -r.mean()
    if models.aux_weight > 0 and out.class_logits is not None:
        loss = loss + models.aux_weight * F.cross_entropy(out.class_logits, labels)
    return loss


def fake_term(models: GanModels, out: DiscriminatorOutput, labels: torch.Tensor) -> torch.Tensor:
    """The part of D's loss on generated images; real_term + fake_term = discriminator_loss."""
    f = out.logits
    if models.loss == "non-saturating":
        loss = F.softplus(f).mean()
    elif models.loss == "hinge":
        loss = F.relu(1 + f).mean()
    else:
        loss = f.mean()
    if models.aux_weight > 0 and out.class_logits is not None:
        loss = loss + models.aux_weight * F.cross_entropy(out.class_logits, labels)
    return loss


def check_family(models: GanModels, arch: str) -> None:
    """Raise ValueError for families DP-SGD on D cannot train (see the module docstring)."""
    if models.gp_weight > 0 or models.r1_gamma > 0:
        raise ValueError(
            f"differential privacy is not available for {arch!r}: its discriminator loss has a "
            "gradient penalty (WGAN-GP) or R1 term, which needs second-order gradients that "
            "Opacus' per-sample gradients do not support; use dcgan or acgan"
        )
    if any(parametrize.is_parametrized(m) for m in models.discriminator.modules()):
        raise ValueError(
            f"differential privacy is not available for {arch!r}: spectral normalisation "
            "(parametrised weights) is not supported by Opacus; use dcgan or acgan"
        )


def private_discriminator(models: GanModels, arch: str) -> nn.Module:
    """A DP-compatible copy of the family's D: BatchNorm -> GroupNorm, no in-place ops."""
    from opacus.validators import ModuleValidator  # opacus loads in ~1.5 s: only when private

    check_family(models, arch)
    fixed = ModuleValidator.fix(models.discriminator)
    for module in fixed.modules():
        # Opacus' full backward hooks see each layer's output; an in-place activation after a
        # hooked layer would overwrite it (autograd refuses: "view modified inplace").
        if getattr(module, "inplace", False):
            module.inplace = False
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise ValueError(f"the {arch!r} discriminator is not DP-compatible: {errors}")
    return fixed


class PrivateDiscriminator:
    """D wrapped for DP-SGD: `module` computes per-sample gradients, `optimizer` clips, noises
    and steps, and every step is recorded by the RDP accountant at rate batch_size / n_train."""

    def __init__(
        self,
        discriminator: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        batch_size: int,
        n_train: int,
        delta: float,
    ) -> None:
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer

        if batch_size > n_train:
            raise ValueError(
                f"with differential privacy batch_size ({batch_size}) must not exceed the "
                f"number of training images ({n_train}): it sets the sampling rate"
            )
        self.n_train = n_train
        self.sample_rate = batch_size / n_train
        self.delta = delta
        self.module = GradSampleModule(discriminator, batch_first=True, loss_reduction="mean")
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            # The mean is over the *expected* batch, so the sampled size is never released.
            expected_batch_size=batch_size,
            loss_reduction="mean",
        )
        self.accountant = RDPAccountant()
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(self.sample_rate))
        self._spent: tuple[tuple[tuple[Any, ...], ...], float] = ((), 0.0)

    @classmethod
    def of(
        cls, config: Any, discriminator: nn.Module, optimizer: torch.optim.Optimizer, n: int
    ) -> PrivateDiscriminator | None:
        """The private D a `GanConfig` asks for (None when it asks for none)."""
        if config.dp_noise_multiplier is None:
            return None
        return cls(
            discriminator,
            optimizer,
            noise_multiplier=float(config.dp_noise_multiplier),
            max_grad_norm=float(config.dp_max_grad_norm),
            batch_size=config.batch_size,
            n_train=n,
            delta=float(config.dp_delta or default_delta(n)),
        )

    def describe(self) -> dict[str, Any]:
        """What run.json records about the mechanism."""
        return {
            "mechanism": "DP-SGD on the discriminator (Poisson sampling), RDP accountant",
            "noise_multiplier": self.optimizer.noise_multiplier,
            "max_grad_norm": self.optimizer.max_grad_norm,
            "sample_rate": self.sample_rate,
            "delta": self.delta,
        }

    def draw(
        self,
        data: TrainingImages,
        batch_size: int,
        z_dim: int,
        n_classes: int,
        mirror: bool,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, ...]:
        """Reals and labels by Poisson sampling; latents and labels for `batch_size` fakes from
        public inputs only (labels uniform over the classes, nothing drawn from the data)."""
        positions = self.poisson_positions(generator)
        real, labels = data.load(positions.numpy())
        if mirror:
            flip = torch.rand(real.shape[0], generator=generator) < 0.5
            real[flip] = real[flip].flip(-1)
        z = torch.randn(batch_size, z_dim, generator=generator)
        return real, labels, z, torch.randint(n_classes, (batch_size,), generator=generator)

    def poisson_positions(self, generator: torch.Generator) -> torch.Tensor:
        """Each training image independently with probability q: the sampling RDP assumes."""
        keep = torch.rand(self.n_train, generator=generator) < self.sample_rate
        return keep.nonzero().flatten()

    def step(
        self,
        models: GanModels,
        real: torch.Tensor,
        labels: torch.Tensor,
        fake: torch.Tensor,
        fake_labels: torch.Tensor,
    ) -> dict[str, float]:
        """One private D step; `models.loss` / `aux_weight` pick the objective (the same as
        `ml.training.gan_losses.discriminator_loss`, split into its real and fake terms)."""
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        with self.hooks_off():
            out_fake = self.module(fake, fake_labels)
            loss_fake = fake_term(models, out_fake, fake_labels)
            loss_fake.backward()
        public = [p.grad.detach().clone() if p.grad is not None else None for p in opt.params]
        opt.zero_grad(set_to_none=True)
        stats = {"d_fake": out_fake.logits.mean().item(), "loss_d": loss_fake.item()}
        n = real.shape[0]
        if n:
            out_real = self.module(real, labels)
            loss_real = real_term(models, out_real, labels)
            with warnings.catch_warnings():
                # Opacus' hook on D's first layer, whose input (an image) needs no gradient.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss_real.backward()
            stats["d_real"] = out_real.logits.mean().item()
            stats["loss_d"] += loss_real.item()
        for p in opt.params:
            if getattr(p, "grad_sample", None) is None:  # an empty draw, or an unused layer
                p.grad_sample = torch.zeros((n, *p.shape), device=p.device, dtype=p.dtype)
        # Clip per sample, sum, add N(0, sigma^2 C^2), divide by B, record the step; then add
        # the public term and take the Adam step.
        if opt.pre_step():
            for p, grad in zip(opt.params, public, strict=True):
                if grad is not None:
                    p.grad.add_(grad)
            opt.original_optimizer.step()
        return stats

    @contextmanager
    def hooks_off(self) -> Iterator[None]:
        """For G's step through D: no per-sample gradients are wanted (D is frozen there)."""
        self.module.disable_hooks()
        try:
            yield
        finally:
            self.module.enable_hooks()

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.accountant.history)

    def epsilon(self) -> float:
        """(epsilon, delta)-DP spent so far by all of D's steps; 0 before the first."""
        key = tuple(tuple(entry) for entry in self.accountant.history)
        if key != self._spent[0]:
            # Remembered: the RDP sum over ~150 orders takes a fraction of a second at high
            # sampling rates, and a tick, its snapshot and the result all ask.
            eps = float(self.accountant.get_epsilon(self.delta)) if key else 0.0
            self._spent = (key, eps)
        return self._spent[1]

    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant.state_dict(), "delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state["accountant"])
