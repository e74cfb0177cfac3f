"""GAN objectives as pure functions of a `GanModels` record.

The loop calls `discriminator_loss` with `fake` already detached and `generator_loss` with a
fresh, attached `fake`; both return the loss to backpropagate and float statistics to log.
Statistics that are computed only on some steps (gp, r1, aux_*) appear only on those steps, so
averaging a key never mixes in zeros for steps where it was not computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ml.networks.gan.base import DiscriminatorOutput, GanModels


def _input_grad(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # create_graph: the penalty is itself differentiated w.r.t. D's parameters.
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(
    models: GanModels, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake
    (Gulrajani et al. 2017, eq. 3); one mixing weight per sample."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grad = _input_grad(models.discriminator(x_hat, labels).logits, x_hat)
    return (grad.norm(2, dim=1) - 1).square().mean()


def _aux_ce(models: GanModels, out: DiscriminatorOutput, labels: torch.Tensor) -> torch.Tensor:
    if out.class_logits is None:
        raise ValueError("aux_weight > 0 but the discriminator returns no class_logits")
    return F.cross_entropy(out.class_logits, labels)


def discriminator_loss(
    models: GanModels,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """D's loss for one step: the family's adversarial loss, plus the gradient penalty when
    `gp_weight > 0`, the auxiliary class loss when `aux_weight > 0`, and the lazy R1 penalty
    when `r1_gamma > 0` on every `r1_interval`-th step. `labels` label both real and fake."""
    d = models.discriminator
    do_r1 = models.r1_gamma > 0 and step % models.r1_interval == 0
    if do_r1:
        # One forward serves both the loss and R1 (StyleGAN2 runs a separate pass only because
        # it steps the optimiser separately for the regulariser).
        real = real.detach().requires_grad_(True)
    out_real = d(real, labels)
    out_fake = d(fake, labels)
    r, f = out_real.logits, out_fake.logits

    if models.loss == "non-saturating":
        # -log sigmoid(r) - log(1 - sigmoid(f)), written with softplus for stability.
        loss = F.softplus(-r).mean() + F.softplus(f).mean()
    elif models.loss == "hinge":
        loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
    elif models.loss == "wgan-gp":
        loss = f.mean() - r.mean()
    else:
        raise ValueError(f"unknown GAN loss {models.loss!r}")
    stats: dict[str, float] = {
        "d_real": r.mean().item(),
        "d_fake": f.mean().item(),
        # ADA's r_t input, computed on every step so the augmentation tuner never misses one.
        "d_real_sign": real_sign(out_real),
    }

    if models.gp_weight > 0:
        gp = gradient_penalty(models, real, fake, labels)
        loss = loss + models.gp_weight * gp
        stats["gp"] = gp.item()
    if models.aux_weight > 0:
        # Odena et al. 2017: D learns to classify both real and generated images.
        aux = _aux_ce(models, out_real, labels) + _aux_ce(models, out_fake, labels)
        loss = loss + models.aux_weight * aux
        stats["aux_d"] = aux.item()
    if do_r1:
        r1 = _input_grad(r, real).square().sum(dim=1).mean()
        # Karras et al. 2020 (StyleGAN2, lazy regularisation): gamma/2 * ||grad||^2, scaled by
        # the interval so the penalty's total weight is unchanged by applying it lazily.
        loss = loss + models.r1_gamma / 2 * r1 * models.r1_interval
        stats["r1"] = r1.item()
    stats["loss_d"] = loss.item()
    return loss, stats


def generator_loss(
    models: GanModels, fake: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """G's loss: non-saturating -log sigmoid(D(G(z))) (Goodfellow et al. 2014), or -D(G(z))
    for the hinge (Lim & Ye 2017) and Wasserstein losses; plus AC-GAN's class loss."""
    out = models.discriminator(fake, labels)
    if models.loss == "non-saturating":
        loss = F.softplus(-out.logits).mean()
    elif models.loss in ("hinge", "wgan-gp"):
        loss = -out.logits.mean()
    else:
        raise ValueError(f"unknown GAN loss {models.loss!r}")
    stats: dict[str, float] = {"g_fake": out.logits.mean().item()}
    if models.aux_weight > 0:
        aux = _aux_ce(models, out, labels)
        loss = loss + models.aux_weight * aux
        stats["aux_g"] = aux.item()
    stats["loss_g"] = loss.item()
    return loss, stats


def real_sign(output: DiscriminatorOutput) -> float:
    """ADA's overfitting heuristic r_t = E[sign(D(x_real))] (Karras et al. 2020, "Training GANs
    with Limited Data"): near 1 when D has memorised the reals, near 0 when it has not."""
    return output.logits.detach().sign().mean().item()
