"""Early stopping on FID (seed 000): stop when FID has not improved for `patience` snapshots.

Pure and picklable, so its state travels in the checkpoint and a resumed run stops exactly
where an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class FidPatience:
    patience: int  # snapshots without improvement before stopping; 0 disables
    min_delta: float = 0.0  # an improvement must beat the best FID by more than this
    best: float | None = None
    best_kimg: float | None = None
    stale: int = 0
    # Snapshots before this many kimg never count as stale: a progressive run's FID can
    # plateau while it stabilises a lower level, which must not end it before it has grown.
    start_kimg: float = 0.0

    def update(self, fid: float, kimg: float) -> bool:
        """Record a snapshot's FID; True when training should stop."""
        if self.best is None or fid < self.best - self.min_delta:
            self.best, self.best_kimg, self.stale = fid, kimg, 0
        elif kimg >= self.start_kimg:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> FidPatience:
        return cls(**state)
