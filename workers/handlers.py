"""One handler per job type: build the ml call from the job's params, return its result."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.collections import available_collections
from ml.data.image_stats import collection_statistics
from ml.data.images import load_image
from ml.progress import ProgressFn, StopFn

Handler = Callable[[dict[str, Any], Path, ProgressFn, StopFn], dict[str, Any]]


def image_stats(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    collection = available_collections()[params["collection"]]

    def images() -> Iterator[tuple[str, str, np.ndarray]]:
        for path, label in zip(collection.files, collection.labels, strict=True):
            yield path.name, label, load_image(path).pixels

    result = collection_statistics(
        images(), len(collection.files), progress=progress, should_stop=stop
    )
    result["collection"] = collection.name
    result["attribution"] = collection.attribution
    (out / "image_stats.json").write_text(json.dumps(result, indent=2))
    return result


HANDLERS: dict[str, Handler] = {"image_stats": image_stats}
