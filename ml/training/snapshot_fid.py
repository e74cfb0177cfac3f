"""FID of a generator's snapshot against the real training images, for curves and early stop.

The one FID implementation (`ml.metrics.fid`) and the one set of feature extractors
(`ml.metrics.features`) serve training and the dashboards alike. Real features are computed
once per run and cached next to the checkpoint, keyed by extractor and dataset hash. Fakes use
latents from a fixed seed and labels in the real class proportions, so successive snapshots
are scored on the same draw.

Snapshot FIDs keep the synthbench resize convention (`FID_CONVENTIONS["antialias"]`): they rank
snapshots and runs of this project against each other, and are not comparable with published
FIDs or with evaluation jobs run in another convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.data.training_images import TrainingImages
from ml.metrics.features import (
    FeatureExtractor,
    InceptionFeatures,
    Resize,
    TorchScriptFeatures,
    extract,
)
from ml.metrics.fid import feature_stats, frechet_distance

BATCH = 64
REAL_LIMIT = 10_000


def make_extractor(
    spec: str, device: torch.device, resize: Resize = "antialias"
) -> FeatureExtractor:
    """Inception (in the given resize convention) for "inception", else a TorchScript file."""
    if spec == "inception":
        return InceptionFeatures(device=device, resize=resize)
    return TorchScriptFeatures(Path(spec), device=device)


@dataclass
class SnapshotFid:
    extractor: FeatureExtractor
    real_mu: np.ndarray
    real_sigma: np.ndarray
    n_fake: int
    seed: int
    device: torch.device

    @classmethod
    def create(
        cls, config: Any, data: TrainingImages, out: Path, device: torch.device
    ) -> SnapshotFid:
        extractor = make_extractor(config.fid_features, device)
        cache = out / "fid_real.npz"
        key = f"{extractor.name}:{data.store.info.content_hash}:{data.split}:{config.resolution}"
        if cache.exists():
            with np.load(cache, allow_pickle=False) as saved:
                if str(saved["key"]) == key:
                    return cls(
                        extractor,
                        saved["mu"],
                        saved["sigma"],
                        config.fid_images,
                        config.seed,
                        device,
                    )
        real, _ = data.all(limit=REAL_LIMIT)
        feats = extract(extractor, real, batch_size=BATCH, device=device)
        mu, sigma = feature_stats(feats)
        np.savez(cache, key=np.asarray(key), mu=mu, sigma=sigma)
        return cls(extractor, mu, sigma, config.fid_images, config.seed, device)

    @torch.no_grad()
    def compute(self, generator: torch.nn.Module, z_dim: int, data: TrainingImages) -> float:
        gen = torch.Generator().manual_seed(self.seed + 7_919)
        labels = data.labels[torch.randint(len(data), (self.n_fake,), generator=gen)]
        z = torch.randn(self.n_fake, z_dim, generator=gen)
        chunks = []
        for start in range(0, self.n_fake, BATCH):
            zb = z[start : start + BATCH].to(self.device)
            lb = labels[start : start + BATCH].to(self.device)
            chunks.append(generator(zb, lb).float().clamp(-1, 1).cpu())
        feats = extract(self.extractor, torch.cat(chunks), batch_size=BATCH, device=self.device)
        mu, sigma = feature_stats(feats)
        return frechet_distance(mu, sigma, self.real_mu, self.real_sigma)
