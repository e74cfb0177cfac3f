"""read_upload on zips built here from real chest X-rays (pneumonia-model-package) and pydicom's
test files: what is accepted, how it is blinded, and every way an upload is refused."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from pydicom.data import get_testdata_file

from app.domain.blinding import png_chunk_types
from app.imagesets.ingest import IngestEntry, IngestLimits, IngestReport, MiB, read_upload
from app.models import Origin
from ml.data.collections import available_collections

CXR = available_collections()["paediatric-cxr"].files
# Always explicit: the default reads the settings, which would create a home folder.
LIMITS = IngestLimits(max_upload_bytes=64 * MiB)


def dcm(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled with this pydicom")
    return Path(path).read_bytes()


def cxr(i: int) -> bytes:
    return CXR[i].read_bytes()


def as_png(data: bytes, *, size: tuple[int, int] | None = None, mode: str = "L") -> bytes:
    im = Image.open(io.BytesIO(data)).convert(mode)
    if size:
        im = im.resize(size)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_zip(*members: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def manifest(*rows: str, header: str = "file,source,label,group") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[IngestEntry, bytes, bytes]] = []

    def __call__(self, entry: IngestEntry, original: bytes, blinded: bytes) -> None:
        self.calls.append((entry, original, blinded))


def ingest(data: bytes, origin: Origin | None = None, **limits: int) -> IngestReport:
    limit_set = IngestLimits(**{"max_upload_bytes": 64 * MiB, **limits})
    return read_upload(io.BytesIO(data), default_origin=origin, limits=limit_set)


def only_error(report: IngestReport) -> str:
    assert len(report.errors) == 1, report.errors
    return report.errors[0]


def test_mixed_zip_with_manifest_in_a_folder() -> None:
    synthetic = as_png(cxr(2))
    ct = dcm("CT_small.dcm")
    members = [
        ("study/", b""),
        ("study/a.jpeg", cxr(0)),
        ("study/sub/b.jpeg", cxr(9)),
        ("study/gen_0001.png", synthetic),
        ("study/ct", ct),  # DICOM without extension: decided by content
        ("study/manifest.csv", manifest(
            "a.jpeg,Real,normal,",
            "./sub/b.jpeg,real,pneumonia,",
            "gen_0001.png,GENERATED,normal,ckpt-20k",
            "ct,fake,,ct-gan 256px",
        )),
        ("__MACOSX/study/._a.jpeg", b"\x00\x05\x16\x07"),
        ("study/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("study/Thumbs.db", b"\xd0\xcf\x11\xe0"),
    ]  # fmt: skip
    sink = Sink()
    report = read_upload(
        io.BytesIO(make_zip(*members)), default_origin=None, limits=LIMITS, on_image=sink
    )
    assert report.errors == []
    by_name = {e.name: e for e in report.entries}
    assert sorted(by_name) == ["study/a.jpeg", "study/ct", "study/gen_0001.png", "study/sub/b.jpeg"]
    a, ct_entry, gen, b = (by_name[n] for n in sorted(by_name))
    assert (a.origin, a.label, a.source, a.source_format) == (Origin.real, "normal", None, "jpeg")
    assert (b.origin, b.label) == (Origin.real, "pneumonia")
    assert (gen.origin, gen.label, gen.source, gen.source_format) == (
        Origin.synthetic,
        "normal",
        "ckpt-20k",
        "png",
    )
    assert (ct_entry.origin, ct_entry.label, ct_entry.source) == (
        Origin.synthetic,
        None,
        "ct-gan 256px",
    )
    assert (ct_entry.source_format, ct_entry.width, ct_entry.height) == ("dicom", 128, 128)
    assert a.sha256 == hashlib.sha256(cxr(0)).hexdigest()
    keys = [e.key for e in report.entries]
    assert len(set(keys)) == 4
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)
    assert [c[0] for c in sink.calls] == report.entries
    assert dict((c[0].name, c[1]) for c in sink.calls)["study/ct"] == ct
    for _, _, blinded in sink.calls:
        assert Image.open(io.BytesIO(blinded)).size == (512, 512)


def test_without_manifest_every_image_gets_the_chosen_origin() -> None:
    data = make_zip(("one.jpeg", cxr(0)), ("two.jpeg", cxr(1)))
    report = ingest(data, Origin.synthetic)
    assert report.ok
    assert [(e.origin, e.label, e.source) for e in report.entries] == [
        (Origin.synthetic, None, None)
    ] * 2
    assert "real or synthetic" in only_error(ingest(data, None))


def test_real_jpeg_and_synthetic_png_are_blinded_identically() -> None:
    exif = Image.Exif()
    exif[0x0131] = "ScannerSoft 4.2"  # Software
    real = io.BytesIO()
    Image.open(CXR[3]).save(real, format="JPEG", exif=exif.tobytes(), quality=90)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "stylegan2-ada checkpoint 12000")
    fake = io.BytesIO()
    Image.open(CXR[12]).convert("RGB").resize((300, 217)).save(fake, format="PNG", pnginfo=info)
    assert b"stylegan2" in fake.getvalue() and b"ScannerSoft" in real.getvalue()
    sink = Sink()
    data = make_zip(
        ("real.jpg", real.getvalue()),
        ("fake.png", fake.getvalue()),
        ("manifest.csv", manifest("real.jpg,real,,", "fake.png,synthetic,,")),
    )
    report = read_upload(io.BytesIO(data), default_origin=None, limits=LIMITS, on_image=sink)
    assert report.ok
    (real_png, fake_png) = [c[2] for c in sink.calls]
    for png in (real_png, fake_png):
        assert png_chunk_types(png) == ["IHDR", "IDAT", "IEND"]
        im = Image.open(io.BytesIO(png))
        assert (im.size, im.mode) == ((512, 512), "L")
        assert b"stylegan2" not in png and b"ScannerSoft" not in png
    assert real_png[:33] == fake_png[:33]  # signature + IHDR: same size, depth, colour type
    assert {e.width for e in report.entries} == {Image.open(CXR[3]).width, 300}


@pytest.mark.parametrize(
    "name",
    [
        "../evil.png",
        "a/../../evil.png",
        "/etc/evil.png",
        "..\\evil.png",
        "C:/evil.png",
        "C:evil.png",
    ],
)
def test_unsafe_paths_are_refused(name: str) -> None:
    report = ingest(make_zip((name, cxr(0)), ("fine.jpeg", cxr(1))), Origin.real)
    error = only_error(report)
    assert name in error and "unsafe path" in error
    assert [e.name for e in report.entries] == ["fine.jpeg"]


def test_symlink_entry_is_refused() -> None:
    link = zipfile.ZipInfo("link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    report = ingest(make_zip((link, b"/etc/passwd"), ("fine.jpeg", cxr(1))), Origin.real)
    assert "link.png: symbolic links are not allowed" in only_error(report)


def test_zip_bomb_is_refused_from_the_directory_without_reading_it() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("x.png", "w") as out:
        zero = bytes(MiB)
        for _ in range(50):
            out.write(zero)
    assert len(buf.getvalue()) < 200_000
    start = time.monotonic()
    error = only_error(ingest(buf.getvalue(), Origin.synthetic))
    assert time.monotonic() - start < 0.5
    assert error.startswith("x.png: would expand") and "zip bomb" in error


def test_a_header_that_understates_the_size_is_caught_while_reading() -> None:
    # PNG-signed, so it is read past the first bytes (plain zeros are refused unread).
    data = bytearray(make_zip(("x.png", b"\x89PNG\r\n\x1a\n" + bytes(3 * MiB))))
    declared = 600_000  # under the ratio rule's 1 MB floor, so only reading can catch it
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 24, declared)
    error = only_error(ingest(bytes(data), Origin.synthetic))
    assert error.startswith("x.png: cannot be read from the zip") and "CRC" in error


def test_bzip2_entries_are_refused() -> None:
    error = only_error(ingest(make_zip(("a.jpeg", cxr(0)), method=zipfile.ZIP_BZIP2), Origin.real))
    assert "compression method 12" in error


def test_not_an_image_and_truncated_dicom_are_named() -> None:
    ct = dcm("CT_small.dcm")
    data = make_zip(
        ("fake.png", b"this is text, not a PNG"),
        ("cut.dcm", ct[: len(ct) // 2]),
        ("fine.jpeg", cxr(0)),
    )
    report = ingest(data, Origin.real)
    assert len(report.errors) == 2
    assert report.errors[0].startswith("fake.png: not a supported image")
    assert report.errors[1].startswith("cut.dcm:") and "truncated" in report.errors[1]


def test_huge_pixel_dimensions_are_refused_before_decoding() -> None:
    ihdr = struct.pack(">IIBBBBB", 7000, 7000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
    png += _chunk(b"IEND", b"")
    error = only_error(ingest(make_zip(("big.png", png)), Origin.synthetic))
    assert error.startswith("big.png:") and "49,000,000 pixels, over the 40,000,000 limit" in error


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload)
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def test_manifest_missing_a_required_column() -> None:
    data = make_zip(
        ("a.jpeg", cxr(0)), ("manifest.csv", manifest("a.jpeg,normal", header="file,label"))
    )
    error = only_error(ingest(data, Origin.real))
    assert "manifest.csv: missing required column(s) source" in error


def test_manifest_problems_are_reported_with_row_numbers() -> None:
    data = make_zip(
        ("a.jpeg", cxr(0)),
        ("b.jpeg", cxr(1)),
        ("c.jpeg", cxr(2)),
        ("manifest.csv", manifest(
            "a.jpeg,gan,normal,", "ghost.png,real,,", "b.jpeg,real,,", "b.jpeg,real,,"
        )),
    )  # fmt: skip
    assert ingest(data, Origin.real).errors == [
        "manifest.csv row 2: unknown source 'gan' for a.jpeg; use real or synthetic "
        "(generated and fake also mean synthetic).",
        "manifest.csv row 5: b.jpeg is listed twice (first on row 4).",
        "manifest.csv row 3: ghost.png is not in the zip.",
        "c.jpeg: not listed in manifest.csv; every image needs a row.",
    ]


def test_semicolon_manifest_from_a_spreadsheet() -> None:
    text = "\ufeffFile;Source;Label\r\na.jpeg;Real;normal\r\n".encode()
    report = ingest(make_zip(("a.jpeg", cxr(0)), ("manifest.csv", text)))
    assert report.ok and report.entries[0].label == "normal"


def test_duplicate_content_is_reported() -> None:
    error = only_error(ingest(make_zip(("a.jpeg", cxr(0)), ("copy/b.jpeg", cxr(0))), Origin.real))
    assert error == "copy/b.jpeg: same content as a.jpeg."


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "The upload is empty"),
        (b"PK\x03\x04 but nothing more", "not a zip file"),
        (None, "not a zip file"),  # a JPEG uploaded as it is
    ],
)
def test_not_a_zip(data: bytes | None, expected: str) -> None:
    assert expected in only_error(ingest(cxr(0) if data is None else data, Origin.real))


def test_size_and_count_limits() -> None:
    data = make_zip(("a.jpeg", cxr(0)), ("b.jpeg", cxr(1)), ("c.jpeg", cxr(2)))
    assert "over the 100.0 KB limit" in only_error(
        ingest(data, Origin.real, max_upload_bytes=102400)
    )
    assert "over the 2 image limit" in only_error(ingest(data, Origin.real, max_entries=2))
    error = only_error(ingest(data, Origin.real, max_total_bytes=500_000))
    assert error.startswith("The zip would unpack to")
    assert "directory lists 3 entries" in only_error(ingest(data, Origin.real, max_zip_records=2))
    # An end record that understates the count is caught once zipfile has read the directory.
    lying = bytearray(data)
    struct.pack_into("<HH", lying, lying.rindex(b"PK\x05\x06") + 8, 1, 1)
    assert "lists 3 entries" in only_error(ingest(bytes(lying), Origin.real, max_zip_records=2))


def test_a_path_works_as_well_as_a_file(tmp_path: Path) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(make_zip(("a.jpeg", cxr(0))))
    report = read_upload(path, default_origin=Origin.real, limits=LIMITS)
    assert report.ok and len(report.entries) == 1


def test_every_problem_is_reported_at_once_and_the_sink_stops_at_the_first() -> None:
    sink = Sink()
    data = make_zip(
        ("good1.jpeg", cxr(0)),
        ("../evil.png", cxr(1)),
        ("fake.png", b"nope"),
        ("good2.jpeg", cxr(2)),
        ("copy.jpeg", cxr(0)),
    )
    report = read_upload(io.BytesIO(data), default_origin=Origin.real, limits=LIMITS, on_image=sink)
    assert len(report.errors) == 3
    assert [e.name for e in report.entries] == ["good1.jpeg", "good2.jpeg"]
    assert sink.calls == []  # the unsafe name was known before any image was decoded
