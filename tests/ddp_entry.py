"""`python -m ml.training.gan_ddp`, then a check of what the rank leaves to interpreter
shutdown: no process group and no DistributedDataParallel wrapper may still be alive (gloo
threads that outlive `main` are how a rank can die in std::terminate at exit). Exits 3 when
something is left, naming it on stderr."""

from __future__ import annotations

import gc
import sys
import warnings

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ml.training.gan_ddp import leave, main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    with warnings.catch_warnings():  # isinstance on every object touches deprecated aliases
        warnings.simplefilter("ignore")
        wrappers = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    if dist.is_initialized() or wrappers:
        group = "still initialised" if dist.is_initialized() else "destroyed"
        print(f"left at exit: process group {group}, {wrappers} DDP wrappers", file=sys.stderr)
        code = 3
    leave(code)
