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

Accounting: every D step is one sampled Gaussian mechanism (sigma, q); the history of them is
composed by two accountants and the smaller epsilon is reported, with the name of the one that
gave it (both are upper bounds on the true epsilon at delta, so the smaller is one too):

* PRV (Gopi, Lee & Wutschitz 2021, "Numerical Composition of Differential Privacy"; Opacus'
  `PRVAccountant`): composes the privacy loss random variables numerically by FFT. Its upper
  bound is the estimate plus `eps_error`, which we set to 1% of the RDP epsilon (between 0.001
  and 0.01, larger only when the FFT mesh would exceed `PRV_MAX_POINTS`). It exceeds Google's
  `dp_accounting` PLD bound by about that slack (checked in tests/unit/test_dp_accountant.py)
  and is 4-14% below RDP at common settings, 2.5-4.7x below RDP with Opacus' default orders
  at q = 0.001 (bench/dp_epsilon.py);
* RDP (Mironov 2017, "Renyi Differential Privacy"; Mironov, Talwar & Zhang 2019 for
  subsampling; Opacus' `RDPAccountant`, with orders up to 1024 rather than its default 63,
  which binds at small sampling rates), converted with Balle et al. 2020's bound: the
  cross-check, and the fallback where PRV cannot be computed (no noise, or a delta
  so small that the PRV's floating-point error would dominate).

StyleGAN2. Its D has minibatch standard deviation, which mixes the examples of a batch: under
DP the group size is 1, so the feature is a constant and each example's output is its own.
Its lazy R1 penalty gamma/2 ||grad_x D(x_i)||^2 differentiates a gradient, which Opacus'
per-sample hooks cannot (they see first-order backward passes only); but R1 on example i
depends on x_i alone, so the per-example gradient of l_r(D(x_i)) + gamma/2 * interval *
||grad_x D(x_i)||^2 is still a per-record quantity that can be clipped. For families with R1
those gradients are computed with torch.func (`vmap` over `grad`, a second-order
`grad` inside) instead of Opacus' hooks, and handed to the same DPOptimizer.

Not supported, refused with ValueError: WGAN-GP's gradient penalty (WGAN-GP, ProGAN) is taken
on interpolates of real-fake *pairs*, and the Poisson-sized real batch has no fixed partner
for each fake; spectral normalisation (SNGAN), whose power-iteration buffers are updated
inside the forward pass and whose parametrised weights Opacus cannot clone. BatchNorm (DCGAN,
AC-GAN) mixes the examples of a batch, which breaks per-example sensitivity: it is replaced by
GroupNorm (Opacus' `ModuleValidator.fix`), so a DP DCGAN's D is a GroupNorm DCGAN. The noise
comes from torch's default generator (restored on resume), not from a cryptographically
secure one (Opacus' `secure_mode` needs torchcsprng).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ml.data.training_images import TrainingImages
from ml.networks.gan.base import DiscriminatorOutput, GanModels
from ml.networks.gan.progressive import MinibatchStd

# delta = min(1e-5, n^-1.1). delta must be well below 1/n: a mechanism that publishes each
# record with probability delta is (0, delta)-DP and leaks delta * n records on average
# (Dwork & Roth 2014, sec. 2.3). n^-1.1 keeps delta * n -> 0 as n grows; 1e-5 is the value
# of Abadi et al. 2016 and caps delta for the small datasets medical imaging often has.
DELTA_CAP = 1e-5
DELTA_EXPONENT = 1.1


def default_delta(n_train: int) -> float:
    return min(DELTA_CAP, float(n_train) ** -DELTA_EXPONENT)


# RDP orders: Opacus' defaults (1.1 .. 63) and larger ones, which give the minimum when the
# sampling rate is small and the noise large (the default grid then overstates epsilon).
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
RDP_ORDERS += [80, 96, 128, 192, 256, 512, 1024]
# PRV: eps_error (the slack its upper bound adds to its estimate) is 1% of the RDP epsilon,
# between these bounds; Opacus' safe domain is only argued for eps_error < 1.
PRV_RELATIVE_ERROR = 0.01
PRV_MIN_ERROR = 1e-3
PRV_DEFAULT_ERROR = 0.01
PRV_MAX_ERROR = 0.5
# The FFT mesh has 2L / mesh points (mesh = eps_error / sqrt(steps log(12 / delta_error) / 2),
# Gopi et al. 2021): seconds per million on a CPU core. Past this size eps_error grows.
PRV_MAX_POINTS = 2_000_000

History = list[tuple[float, float, int]]  # (noise multiplier, sample rate, steps), Opacus'


@dataclass(frozen=True)
class Spent:
    """The privacy spent by a history of sampled Gaussian steps, at one delta."""

    epsilon: float  # the smaller of the two bounds: the one to report
    accountant: str  # "prv" or "rdp": which of them gave `epsilon`
    epsilon_rdp: float
    epsilon_prv: float | None  # None where PRV could not be computed (see `prv_epsilon`)


def rdp_epsilon(history: History, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = list(history)
    with warnings.catch_warnings():
        # sigma = 0 (tests only; the config refuses it): every order gives infinity.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(accountant.get_epsilon(delta, alphas=RDP_ORDERS))


def prv_error(history: History, delta: float, epsilon_rdp: float) -> float | None:
    """eps_error for the PRV accountant: 1% of the RDP epsilon, in [0.001, 0.01], grown so the
    FFT mesh stays under PRV_MAX_POINTS; None when even PRV_MAX_ERROR would not."""
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )

    error = min(PRV_DEFAULT_ERROR, max(PRV_MIN_ERROR, PRV_RELATIVE_ERROR * epsilon_rdp))
    delta_error = delta / 1000  # Opacus' default
    steps = sum(n for _, _, n in history)
    prvs = [PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in history]
    half_width = compute_safe_domain_size(prvs, [n for _, _, n in history], error, delta_error)
    per_error = 2 * half_width * math.sqrt(steps * math.log(12 / delta_error) / 2)
    error = max(error, per_error / PRV_MAX_POINTS)
    return error if error <= PRV_MAX_ERROR else None


def prv_epsilon(history: History, delta: float, epsilon_rdp: float) -> float | None:
    """Opacus' PRV upper bound, or None where it cannot be computed: no noise, or a mesh or a
    delta for which its floating-point error would dominate (Opacus raises)."""
    from opacus.accountants import PRVAccountant

    if not all(sigma > 0 for sigma, _, _ in history) or not math.isfinite(epsilon_rdp):
        return None
    try:
        with warnings.catch_warnings():
            # Opacus sizes the PRV domain with an RDP bound over its default orders, which
            # warns when the largest one binds; that only widens the domain.
            warnings.filterwarnings("ignore", message="Optimal order is the")
            error = prv_error(history, delta, epsilon_rdp)
            if error is None:
                return None
            accountant = PRVAccountant()
            accountant.history = list(history)
            epsilon = float(accountant.get_epsilon(delta, eps_error=error))
    except (ValueError, RuntimeError, FloatingPointError, OverflowError, MemoryError):
        return None
    return epsilon if math.isfinite(epsilon) and epsilon >= 0 else None


def privacy_spent(history: History, delta: float) -> Spent:
    """(epsilon, delta)-DP of the composed steps: the tighter of PRV and RDP, named."""
    if not history:
        return Spent(0.0, "prv", 0.0, 0.0)
    rdp = rdp_epsilon(history, delta)
    prv = prv_epsilon(history, delta, rdp)
    if prv is not None and prv < rdp:
        return Spent(prv, "prv", rdp, prv)
    return Spent(rdp, "rdp", rdp, prv)


ACCOUNTANT_NAMES = {
    "prv": "PRV accountant (Gopi et al. 2021)",
    "rdp": "RDP accountant (Mironov 2017)",
}


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
    if models.gp_weight > 0:
        raise ValueError(
            f"differential privacy is not available for {arch!r}: its WGAN-GP gradient "
            "penalty is a second-order term on interpolates of real-fake pairs, which a "
            "Poisson-sampled real batch cannot pair; use dcgan, acgan or stylegan2"
        )
    if any(parametrize.is_parametrized(m) for m in models.discriminator.modules()):
        raise ValueError(
            f"differential privacy is not available for {arch!r}: spectral normalisation "
            "(parametrised weights) is not supported by Opacus; use dcgan, acgan or stylegan2"
        )


def private_discriminator(models: GanModels, arch: str) -> nn.Module:
    """A DP-compatible copy of the family's D: BatchNorm -> GroupNorm, no in-place ops,
    minibatch standard deviation over groups of one."""
    from opacus.validators import ModuleValidator  # opacus loads in ~1.5 s: only when private

    check_family(models, arch)
    fixed = ModuleValidator.fix(models.discriminator)
    for module in fixed.modules():
        # Opacus' full backward hooks see each layer's output; an in-place activation after a
        # hooked layer would overwrite it (autograd refuses: "view modified inplace").
        if getattr(module, "inplace", False):
            module.inplace = False
        if isinstance(module, MinibatchStd):
            # A statistic over several examples would put each one into the others' outputs
            # (and gradients); over a group of one it is a constant map.
            module.group_size = 1
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise ValueError(f"the {arch!r} discriminator is not DP-compatible: {errors}")
    return fixed


def per_sample_gradients(
    models: GanModels,
    discriminator: nn.Module,
    real: torch.Tensor,
    labels: torch.Tensor,
    r1_weight: float,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Each example's gradient of its real term plus `r1_weight` * ||grad_x D(x_i)||^2 (R1),
    w.r.t. D's parameters, by torch.func: {name: (B, *shape)}, the logits (B,) and the R1
    norms (B,) (zeros when r1_weight is 0). D must not mix examples (no BatchNorm, minibatch
    statistics over groups of one) and must carry no Opacus hooks (torch.func refuses them)."""
    from torch.func import functional_call, grad, vmap

    params = {k: p.detach() for k, p in discriminator.named_parameters() if p.requires_grad}

    def example_loss(
        params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        x, y = x.unsqueeze(0), y.unsqueeze(0)  # vmap hides the batch dimension

        def realness(image: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
            out = functional_call(discriminator, params, (image, y))
            return out.logits.sum(), (real_term(models, out, y), out.logits.detach())

        if r1_weight > 0:
            # create_graph is implicit: the outer grad differentiates through this one.
            x_grad, (loss, logits) = grad(realness, has_aux=True)(x)
            penalty = x_grad.square().sum()
            loss = loss + r1_weight * penalty
        else:
            _, (loss, logits) = realness(x)
            penalty = torch.zeros((), device=x.device, dtype=loss.dtype)
        return loss, (logits.squeeze(0), penalty.detach())

    grads, (logits, penalties) = vmap(grad(example_loss, has_aux=True), in_dims=(None, 0, 0))(
        params, real, labels
    )
    return grads, logits, penalties


class PrivateDiscriminator:
    """D wrapped for DP-SGD: `module` computes per-sample gradients, `optimizer` clips, noises
    and steps, and every step is recorded at rate batch_size / n_train for the accountants.

    Per-sample gradients come from Opacus' hooks (`module` is a GradSampleModule), or, for
    families with R1 (`r1_gamma` > 0), from torch.func (`module` is D itself), since the
    hooks cannot differentiate R1's input gradient."""

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
        r1_gamma: float = 0.0,
        r1_interval: int = 16,
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
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval
        self.functorch = r1_gamma > 0
        self.module: nn.Module = (
            discriminator
            if self.functorch
            else GradSampleModule(discriminator, batch_first=True, loss_reduction="mean")
        )
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            # The mean is over the *expected* batch, so the sampled size is never released.
            expected_batch_size=batch_size,
            loss_reduction="mean",
        )
        # Records (sigma, q, steps), the history both accountants compose (`privacy_spent`);
        # an RDPAccountant so that checkpoints keep the state format they always had.
        self.accountant = RDPAccountant()
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(self.sample_rate))
        self._spent: tuple[tuple[tuple[Any, ...], ...], Spent] = ((), privacy_spent([], delta))

    @classmethod
    def of(
        cls,
        config: Any,
        models: GanModels,
        discriminator: nn.Module,
        optimizer: torch.optim.Optimizer,
        n: int,
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
            r1_gamma=models.r1_gamma,
            r1_interval=models.r1_interval,
        )

    def describe(self) -> dict[str, Any]:
        """What run.json records about the mechanism."""
        gradients = "torch.func, with per-example R1" if self.functorch else "Opacus hooks"
        return {
            "mechanism": (
                "DP-SGD on the discriminator (Poisson sampling, per-example gradients by "
                f"{gradients}); epsilon: the tighter of the {ACCOUNTANT_NAMES['prv']} and the "
                f"{ACCOUNTANT_NAMES['rdp']}"
            ),
            "accountants": ["prv", "rdp"],
            "noise_multiplier": self.optimizer.noise_multiplier,
            "max_grad_norm": self.optimizer.max_grad_norm,
            "sample_rate": self.sample_rate,
            "delta": self.delta,
            "r1_gamma": self.r1_gamma if self.functorch else None,
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
        *,
        step: int = 0,
    ) -> dict[str, float]:
        """One private D step; `models.loss` / `aux_weight` pick the objective (the same as
        `ml.training.gan_losses.discriminator_loss`, split into its real and fake terms);
        `step` counts D steps, for the lazy R1 of families that have it."""
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
        if n and self.functorch:
            do_r1 = step % self.r1_interval == 0
            # Lazy R1 as in `discriminator_loss`: gamma / 2, times the interval, every
            # interval-th step; here inside each example's loss, before clipping.
            weight = self.r1_gamma / 2 * self.r1_interval if do_r1 else 0.0
            grads, logits, r1 = per_sample_gradients(models, self.module, real, labels, weight)
            for name, p in self.module.named_parameters():
                if name in grads:
                    p.grad_sample = grads[name]
            stats["d_real"] = logits.mean().item()
            with torch.no_grad():
                stats["loss_d"] += real_term(models, DiscriminatorOutput(logits), labels).item()
            if do_r1:
                stats["r1"] = r1.mean().item()
        elif n:
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
        if self.functorch:  # no hooks to switch off
            yield
            return
        self.module.disable_hooks()
        try:
            yield
        finally:
            self.module.enable_hooks()

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.accountant.history)

    def spent(self) -> Spent:
        """(epsilon, delta)-DP spent so far by all of D's steps, by both accountants."""
        key = tuple(tuple(entry) for entry in self.accountant.history)
        if key != self._spent[0]:
            # Remembered: PRV's FFT takes up to seconds on long runs, and a tick, its snapshot
            # and the result all ask.
            self._spent = (key, privacy_spent([tuple(e) for e in key], self.delta))
        return self._spent[1]

    def epsilon(self) -> float:
        """The epsilon to report: the tighter accountant's; 0 before the first step."""
        return self.spent().epsilon

    def record(self) -> dict[str, Any]:
        """What a tick and a snapshot log about the privacy spent."""
        spent = self.spent()
        return {
            "epsilon": spent.epsilon,
            "accountant": spent.accountant,
            "epsilon_rdp": spent.epsilon_rdp,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant.state_dict(), "delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state["accountant"])
