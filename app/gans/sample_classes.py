"""Which of a GAN's classes to sample: `--classes 0,2` or `--classes normal,pneumonia`."""

from __future__ import annotations

from collections.abc import Sequence

from app.jobs.specs import SpecError


def pick_classes(text: str, class_names: Sequence[str]) -> tuple[str, ...]:
    """The class names `text` asks for, in its order, each once; () for all of them.

    Each comma-separated item is a class name or its 0-based index in the run's classes. A
    name wins over an index, so a run whose classes are called "0" and "1" means what it says.
    """
    chosen: list[str] = []
    unknown: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item in class_names:
            name = item
        elif item.isdigit() and int(item) < len(class_names):
            name = class_names[int(item)]
        else:
            unknown.append(item)
            continue
        if name not in chosen:
            chosen.append(name)
    if unknown:
        listed = ", ".join(f"{i} = {n}" for i, n in enumerate(class_names))
        asked = ", ".join(repr(u) for u in unknown)
        raise SpecError("classes", f"No class {asked} in this run; its classes are {listed}.")
    return tuple(chosen)
