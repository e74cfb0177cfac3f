"""A CycleGAN run's settings, without torch: the web tier parses the translate form into this
(app/gans/options.py) and the worker trains from it (ml/training/cyclegan.py)."""

from __future__ import annotations

from dataclasses import dataclass

LAMBDA_CYCLE = 10.0  # Zhu et al. 2017, section 4
LAMBDA_IDENTITY = 0.5  # times LAMBDA_CYCLE (Zhu et al. 2017, section 5.2, and their code)


@dataclass
class CycleGanConfig:
    resolution: int = 128
    batch_size: int = 1  # Zhu et al. train with batch 1 (InstanceNorm makes this work)
    kimg: float = 200.0  # ~200 epochs of a 1k-image domain, the paper's schedule
    tick_kimg: float = 1.0
    snapshot_ticks: int = 5
    seed: int = 0
    lambda_cycle: float = LAMBDA_CYCLE  # Zhu et al. 2017, section 4
    lambda_identity: float = LAMBDA_IDENTITY  # times lambda_cycle, as in the paper's code
    pool_size: int = 50  # Shrivastava et al. 2017 via Zhu et al.: D sees 50 past fakes
    lr: float = 2e-4  # Adam settings of Zhu et al. 2017
    beta1: float = 0.5
    beta2: float = 0.999
    decay_start: float = 0.5  # fraction of kimg after which lr decays linearly to zero
    base_channels: int = 64
    n_blocks: int | None = None  # None: 6 at <= 128 px, 9 above (the paper's choice)
    d_layers: int = 3  # stride-2 PatchGAN layers: 3 = 70x70 patches
    # No x-flip by default: laterality is anatomy in radiographs, and a flip can map one
    # domain onto the other (bright-left vs bright-right in our tests).
    mirror: bool = False
    split: str = "train"
    eval_split: str = "test"  # fixed grid / metric images; falls back to `split` if empty
    grid_images: int = 8
    eval_images: int = 64
    device: str = "cpu"

    def check(self) -> None:
        if self.batch_size < 1 or self.kimg <= 0 or self.tick_kimg <= 0:
            raise ValueError("batch_size, kimg and tick_kimg must be positive")
        if self.snapshot_ticks < 1 or self.grid_images < 1 or self.eval_images < 1:
            raise ValueError("snapshot_ticks, grid_images and eval_images must be >= 1")
        if not 0.0 <= self.decay_start <= 1.0:
            raise ValueError("decay_start is a fraction of kimg in [0, 1]")
        if self.pool_size < 0 or self.lambda_cycle < 0 or self.lambda_identity < 0:
            raise ValueError("pool_size, lambda_cycle and lambda_identity must be >= 0")
