"""What DP-SGD costs StyleGAN2's discriminator step: the ordinary step against the private one.

Ordinary: `discriminator_loss` (real and fake terms, lazy R1 on R1 steps) backward and an Adam
step. Private: `PrivateDiscriminator.step`, i.e. the fake term by an ordinary backward pass,
each real example's gradient (with its own R1 term on R1 steps) by torch.func, clipping,
noise and the Adam step. Both on an R1 step (D step 0) and an ordinary one (step 1), same
networks and batch; medians of `--repeats` timings after one warm-up.

    .venv/bin/python bench/dp_stylegan2_step.py --resolution 32 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.networks.gan import build_gan  # noqa: E402
from ml.training.gan_losses import discriminator_loss  # noqa: E402
from ml.training.privacy import PrivateDiscriminator, private_discriminator  # noqa: E402


def _median_seconds(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-channels", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = build_gan(
        "stylegan2",
        args.resolution,
        2,
        batch=args.batch,
        max_channels=args.max_channels,
        z_dim=64,
        w_dim=64,
        mapping_layers=2,
    )
    plain = models.discriminator.to(device)
    models.discriminator = private_discriminator(models, "stylegan2").to(device)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-4)
    opt_private = torch.optim.Adam(models.discriminator.parameters(), lr=1e-4)
    dp = PrivateDiscriminator(
        models.discriminator,
        opt_private,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=args.batch,
        n_train=10 * args.batch,
        delta=1e-5,
        r1_gamma=models.r1_gamma,
        r1_interval=models.r1_interval,
    )
    shape = (args.batch, 1, args.resolution, args.resolution)
    real = torch.rand(shape, device=device) * 2 - 1
    fake = torch.rand(shape, device=device) * 2 - 1
    labels = torch.randint(2, (args.batch,), device=device)
    plain_models = replace(models, discriminator=plain)

    def ordinary(step: int) -> Callable[[], None]:
        def run() -> None:
            loss, _ = discriminator_loss(plain_models, real, fake, labels, step=step)
            opt_plain.zero_grad(set_to_none=True)
            loss.backward()
            opt_plain.step()

        return run

    def private(step: int) -> Callable[[], None]:
        def run() -> None:
            dp.step(models, real, labels, fake, labels, step=step)

        return run

    params = sum(p.numel() for p in plain.parameters())
    print(
        f"StyleGAN2 D, {args.resolution} px, batch {args.batch}, {params / 1e6:.2f} M "
        f"parameters, {device}"
    )
    for name, step in (("R1 step", 0), ("plain step", 1)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        a = _median_seconds(ordinary(step), args.repeats, device)
        b = _median_seconds(private(step), args.repeats, device)
        memory = (
            f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            if device.type == "cuda"
            else ""
        )
        times = f"ordinary {a * 1000:.0f} ms, private {b * 1000:.0f} ms ({b / a:.1f}x)"
        print(f"{name}: {times}{memory}")


if __name__ == "__main__":
    main()
