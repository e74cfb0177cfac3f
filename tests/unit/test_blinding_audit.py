"""The blinding audit's own checks, without a study: opaque ids, headers, PNG encoding."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from starlette.datastructures import Headers

from app.domain.blinding import canonical_png, opaque_id
from app.reading.blinding_audit import (
    _Facts,
    header_problems,
    opaque_id_problems,
    png_encoding,
)
from app.studies.design import ReadingOptions


def test_random_opaque_ids_pass() -> None:
    assert opaque_id_problems([opaque_id() for _ in range(5000)]) == []


def test_guessable_opaque_ids_are_reported() -> None:
    sequential = [f"study1-reader01-{n:016d}" for n in range(20)]
    assert any("share a 31-character prefix" in p for p in opaque_id_problems(sequential))
    suffixed = [opaque_id()[:12] + "-reader01-entry0001" for _ in range(3)]
    assert any("suffix" in p for p in opaque_id_problems(suffixed))
    assert any("distinct characters" in p for p in opaque_id_problems(["ab" * 16]))
    assert any("not 32 URL-safe" in p for p in opaque_id_problems(["17", "x" * 31 + "/"]))
    same = opaque_id()
    assert any("used more than once" in p for p in opaque_id_problems([same, same]))


class _Response:
    def __init__(self, **headers: str) -> None:
        self.headers = Headers(headers=headers)


FACTS = _Facts(
    reading=ReadingOptions(),
    forbidden=["0012", "gen_0012.png", "4f1c0ffee"],
    forbidden_words=["ganA-64k", "pneumonia"],
)


def test_headers_naming_a_file_or_its_source_are_reported() -> None:
    leaky = _Response(
        etag='"4f1c0ffee"', **{"x-generator": "ganA-64k", "content-disposition": "gen_0012.png"}
    )
    found = header_problems(leaky, FACTS, "image 3")
    assert "image 3: header 'etag' identifies a file" in found
    assert "image 3: header 'content-disposition' identifies a file" in found
    assert "image 3: header 'x-generator' contains the label or source 'ganA-64k'" in found
    assert "image 3: header 'etag' contains '4f1c0ffee'" in found
    # Numbers the server sets are not names, even when a file is called 0012.png.
    plain = _Response(**{"content-length": "10012", "content-type": "image/png"})
    assert header_problems(plain, FACTS, "image 3") == []


def _pillow_png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_png_encoding_tells_encoders_apart_not_images() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, (40, 60)), rng.uniform(0, 1, (70, 30))
    ours = png_encoding(canonical_png(a))
    assert ours == png_encoding(canonical_png(b)) == ("1 IDAT", "zlib 789c", "filters (4,)")
    with Image.open(io.BytesIO(canonical_png(a))) as im:
        pillow = png_encoding(_pillow_png(np.asarray(im)))
    assert pillow != ours and pillow[2] != "filters (4,)"  # Pillow picks filters per row
