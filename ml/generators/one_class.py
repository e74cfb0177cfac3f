"""The images of one class of a training split, as a one-class `TrainingImages`."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from ml.data.training_images import TrainingImages


def one_class(data: TrainingImages, name: str) -> TrainingImages:
    """`data` restricted to class `name`, relabelled 0: a generator trained on it is a
    generator of that class alone."""
    if name not in data.class_names:
        raise ValueError(f"no class {name!r} in this split; it has {list(data.class_names)}")
    index = data.class_names.index(name)
    keep = (data.labels == index).numpy()
    rows = data.rows[keep]
    sub = copy.copy(data)  # shares the store and its memmap: nothing is read here
    sub.classes = replace(
        data.classes,
        rows=rows,
        combos=(data.classes.combos[index],),
        names=(name,),
        labels=[0] * int(rows.size),
    )
    sub.rows = rows
    sub.labels = torch.zeros(int(rows.size), dtype=torch.long)
    return sub
