"""Multi-process (torchrun) plumbing for the GAN loop: process group, DDP, collectives.

`setup` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK; with WORLD_SIZE > 1 it starts a
process group (NCCL on CUDA, gloo on CPU) and pins each rank to `cuda:LOCAL_RANK`. Without
torchrun every helper here is a no-op, so the loop has one code path.

Design, and why:

* `batch_size` is the *global* batch. Every rank draws the whole global batch's positions,
  flips and latents from one shared generator (seeded from the run's seed, identical on all
  ranks) and keeps its slice `shard(...)`: the data stream is then independent of the
  number of processes - a 2-process run sees exactly the images a 1-process run sees - and
  rank 0's checkpoint holds the only data-RNG state there is, so a run resumes exactly with
  the same number of processes and can resume with another. Drawing B indices and B
  latents instead of B / W costs nothing next to the networks; only the rank's own images
  are read from disk.
* Randomness that is naturally per device (DiffAugment / ADA draws, from torch's global
  generator) gets a per-rank seed, and each rank's state is gathered into the checkpoint.
* Gradients are averaged by DistributedDataParallel; the mean over W equal slices of a mean
  loss is the mean over the global batch, so without BatchNorm a W-process step equals a
  1-process step up to float summation order. BatchNorm layers normalise over each rank's
  slice (B / W images), as with any per-device BatchNorm; SyncBatchNorm would need CUDA.
* Only rank 0 writes files and computes FID; decisions that depend on them (early stop,
  the stop callback) are broadcast from rank 0 so every rank leaves the loop together. Every
  rank reads the run folder on resume, so it must be visible to all (one machine, or a
  shared filesystem).
* EMA and ADA stay identical across ranks: G's weights are (DDP averages the gradients),
  and ADA's overfitting signal r_t is averaged over ranks before p moves.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ml.data.training_images import TrainingImages

# A per-rank seed for torch's global generator: far from the run seed's neighbours so that
# rank r of seed s and rank r' of seed s' rarely share a stream.
_RANK_SEED_STRIDE = 1_000_033


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - immutable default
    owns_group: bool = False  # True when `setup` started the process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str, batch_size: int, *, private: bool = False) -> Dist:
    """Join the torchrun job described by the environment (a no-op without one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if world <= 1:
        return Dist(device=dev)
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} is not divisible by WORLD_SIZE {world}")
    if private:
        # Opacus needs clipping before the all-reduce (its DPDDP and distributed optimiser),
        # which torch's DDP does not do; not wired up yet.
        raise ValueError("differential privacy is not supported with multiple processes")
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev, owns)


def teardown(d: Dist, *, clean: bool = True) -> None:
    """Destroy the group `setup` started. A rank of a 2-process gloo run on a loaded CPU
    machine sometimes died in std::terminate at exit (cause not pinned down). Guards: any
    DDP wrapper left in a reference cycle is collected while the group still exists (none
    was found, but nothing may hold the group into interpreter shutdown), and after a clean
    run every rank meets at a barrier, so none closes its connections while a peer still
    waits on a message from it. After a failure there is no barrier: the peer may be gone."""
    if not (d.owns_group and dist.is_initialized()):
        return
    gc.collect()
    if clean:
        dist.barrier()
    dist.destroy_process_group()


@contextmanager
def session(device: str, batch_size: int, *, private: bool = False) -> Iterator[Dist]:
    """`setup`, then `teardown` however the block ends."""
    d = setup(device, batch_size, private=private)
    try:
        yield d
    except BaseException:
        teardown(d, clean=False)
        raise
    teardown(d)


def rank_seed(seed: int, rank: int) -> int:
    return seed + _RANK_SEED_STRIDE * (rank + 1)


def seed_ranks(d: Dist, seed: int) -> None:
    """Give each rank its own stream in torch's global generator (augmentation draws). A
    single process keeps the stream it has, so its runs are unchanged by this module."""
    if d.enabled:
        torch.manual_seed(rank_seed(seed, d.rank))


def torch_rng_states(d: Dist) -> dict[str, Any]:
    """Checkpoint entries for torch's global generators: rank 0's CPU state (what a single
    process restores) and every rank's CPU and CUDA states (a collective under torchrun)."""
    cuda = torch.cuda.get_rng_state(d.device) if d.device.type == "cuda" else None
    states = gather((torch.get_rng_state(), cuda), d)
    return {
        "torch_rng": states[0][0],
        "torch_rng_ranks": [cpu for cpu, _ in states],
        "cuda_rng_ranks": [gpu for _, gpu in states],
    }


def restore_torch_rng(state: dict[str, Any], d: Dist, seed: int) -> None:
    ranks = state.get("torch_rng_ranks") or [state["torch_rng"]]
    cuda = state.get("cuda_rng_ranks") or [None] * len(ranks)
    if len(ranks) == d.world_size:
        # .cpu(): a checkpoint loaded with map_location="cuda" brings the states along.
        torch.set_rng_state(ranks[d.rank].cpu())
        if cuda[d.rank] is not None and d.device.type == "cuda":
            torch.cuda.set_rng_state(cuda[d.rank].cpu(), d.device)
    else:
        # Resumed with another number of processes: augmentation draws cannot continue
        # exactly (the data stream, in the shared generator, still does).
        torch.manual_seed(rank_seed(seed + state["counters"]["nimg"], d.rank))


def draw(
    data: TrainingImages,
    batch_size: int,
    z_dim: int,
    mirror: bool,
    generator: torch.Generator,
    d: Dist,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's slice of a uniform with-replacement global batch: reals (x-flipped at
    random when `mirror`), labels, latents. The draws are those a single process makes, in
    the same order; only the slice's images are read."""
    positions = torch.randint(len(data), (batch_size,), generator=generator)
    flip = torch.rand(batch_size, generator=generator) < 0.5 if mirror else None
    part = shard(d, batch_size)
    real, labels = data.load(positions[part].numpy())
    if flip is not None:
        flip = flip[part]
        real[flip] = real[flip].flip(-1)
    return real, labels, torch.randn(batch_size, z_dim, generator=generator)[part]


def shard(d: Dist, batch_size: int) -> slice:
    """This rank's part of a global batch of `batch_size`."""
    per_rank = batch_size // d.world_size
    return slice(d.rank * per_rank, (d.rank + 1) * per_rank)


def wrap(module: nn.Module, d: Dist, *, find_unused: bool = False) -> nn.Module:
    """DDP around `module` when there are several processes; the module itself otherwise."""
    if not d.enabled:
        return module
    ids = [d.device.index] if d.device.type == "cuda" else None
    # find_unused_parameters for growing networks (ProGAN): layers above the current level
    # get no gradient, and DDP would wait for them forever.
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def mean_floats(values: dict[str, float], d: Dist) -> dict[str, float]:
    """Average each value over ranks (all ranks must pass the same keys)."""
    if not d.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return {k: float(v) / d.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def mean_float(value: float, d: Dist) -> float:
    return mean_floats({"v": value}, d)["v"] if d.enabled else value


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's `obj` on every rank."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out
