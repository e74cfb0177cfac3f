"""Hostile uploads end to end: every refusal is a 4xx naming the file, nothing is stored, and a
running server's memory stays bounded however large or explosive the request body is."""

from __future__ import annotations

import contextlib
import csv
import io
import socket
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from sqlalchemy import func, select
from support import Env, Server, make_user
from web_client import WebClient, csrf_from

from app.db import session_scope
from app.imagesets.storage import images_root
from app.main import create_app
from app.models import ExternalRating, Image, ImageSet, Study
from ml.data.collections import available_collections

CXR = available_collections()["paediatric-cxr"].files
MiB = 1024 * 1024
# Growth of the server's peak resident memory allowed for one hostile request: a fraction of
# the request itself, which is 200 MB for the largest one here.
RSS_BOUND = 100 * MiB


def make_zip(*members: tuple[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A baseline JPEG of 16x16 pixels whose frame header claims `width` x `height`."""
    buf = io.BytesIO()
    PILImage.new("L", (16, 16), 128).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def dicom_with_codestream_size(width: int, height: int) -> bytes:
    """pydicom's JPEG-LS MR slice (64x64 in its header) whose codestream claims another size."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    struct.pack_into(">HH", frame, frame.index(b"\xff\xf7") + 5, height, width)
    ds.PixelData = encapsulate([bytes(frame)])
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def stored_files() -> list[Path]:
    root = images_root()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def web(sqlite_env: Env) -> Iterator[WebClient]:
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        browser = WebClient(client)
        browser.login("alice", "alice-password")
        yield browser


def upload(web: WebClient, data: bytes, origin: str = "synthetic") -> httpx.Response:
    token = csrf_from(web.get("/imagesets").text)
    return web.client.post(
        "/imagesets",
        data={"csrf_token": token, "name": "Hostile", "origin": origin},
        files={"file": ("set.zip", data, "application/zip")},
        follow_redirects=False,
    )


def test_each_hostile_image_is_named_in_a_422_and_nothing_is_stored(web: WebClient) -> None:
    data = make_zip(
        ("ok.jpeg", CXR[1].read_bytes()),
        ("huge.png", png_header(7000, 7000)),
        ("huge.jpeg", jpeg_with_size(60000, 60000)),
        ("notes.png", b"Dear colleague, the images follow.\n" * 100),
        ("scan.dcm", dicom_with_codestream_size(60000, 60000)),
    )
    response = upload(web, data)
    assert response.status_code == 422
    text = response.text
    assert "4 problems" in text and "Nothing was stored" in text
    for fragment in (
        "huge.png: image is 7000x7000 = 49,000,000 pixels, over the 40,000,000 limit",
        "huge.jpeg: JPEG header announces an image over the decompression-bomb limit",
        "notes.png: not a supported image (PNG, JPEG or DICOM): unrecognised content",
        "scan.dcm: JPEG-LS stream is 60000x60000 pixels but the DICOM header says 64x64",
    ):
        assert fragment in text, fragment
    assert (count(ImageSet), count(Image)) == (0, 0) and stored_files() == []


def test_ratings_with_wrong_columns_import_nothing(web: WebClient) -> None:
    token = csrf_from(web.get("/studies/import").text)
    csv_text = "rater,picture,truth,answer\nR1,a,real,real\nR1,b,fake,fake\n"
    response = web.client.post(
        "/studies/import",
        data={"csrf_token": token, "name": "Wrong columns"},
        files={"file": ("ratings.csv", csv_text.encode(), "text/csv")},
    )
    assert response.status_code == 422
    assert "reader" in response.text and "image" in response.text
    assert (count(Study), count(ExternalRating)) == (0, 0)


def test_formula_cells_survive_import_and_leave_the_export_escaped(web: WebClient) -> None:
    # Reader names are free text from someone else's spreadsheet; the export is opened in one.
    readers = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "R1²"]
    source = io.StringIO()
    writer = csv.writer(source)
    writer.writerow(["reader", "image", "truth", "answer", "confidence"])
    writer.writerows([r, f"img{i}", "real", "fake", 3] for i, r in enumerate(readers))
    token = csrf_from(web.get("/studies/import").text)
    imported = web.client.post(
        "/studies/import",
        data={"csrf_token": token, "name": "Formulas"},
        files={"file": ("ratings.csv", source.getvalue().encode(), "text/csv")},
        follow_redirects=False,
    )
    assert imported.status_code == 303, imported.text
    study = imported.headers["location"].split("/")[2]
    export = web.get(f"/studies/{study}/export.csv")
    assert export.status_code == 200
    exported = {row[0] for row in list(csv.reader(io.StringIO(export.text)))[1:]}
    assert exported == {"'" + r for r in readers[:4]} | {"R1²"}
    # "R1²" goes through natural_key, where "²" passed isdigit() and failed int(): a 500.
    assert web.get(f"/studies/{study}/export.imrmc").status_code == 200
    assert web.get(f"/studies/{study}/results").status_code == 200


def _reply_to_headers_only(server: Server, path: str, content_type: str, length: int) -> str:
    """Send a request's headers announcing `length` body bytes, none of them, and return the
    reply: one that arrives proves the body was refused without being read."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    reply = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        while not _complete(reply) and (chunk := sock.recv(65536)):
            reply += chunk
    return reply.decode(errors="replace")


def _complete(reply: bytes) -> bool:
    header, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        return False
    lines = header.decode(errors="replace").lower().splitlines()
    length = next((int(x.split(":")[1]) for x in lines if x.startswith("content-length:")), 0)
    return len(body) >= length


def test_oversized_bodies_are_refused_unread(sqlite_env: Env, server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory(sqlite_env)
    upload = _reply_to_headers_only(
        server, "/imagesets", "multipart/form-data; boundary=b", 600 * MiB
    )
    assert upload.startswith("HTTP/1.1 413") and "over the 512 MB limit" in upload
    # Any form, signed in or not: the CSRF check parses every POST's form, and Starlette keeps
    # url-encoded fields in memory (150 MB of them held 150 MB of server memory).
    for path in ("/login", "/jobs", "/studies"):
        form = _reply_to_headers_only(server, path, "application/x-www-form-urlencoded", 150 * MiB)
        assert form.startswith("HTTP/1.1 413") and "over the 1,048,576 byte limit" in form, path


def test_form_limit_leaves_ordinary_forms_alone(web: WebClient) -> None:
    token = csrf_from(web.get("/studies/import").text)
    big = web.client.post(
        "/studies", data={"csrf_token": token, "name": "x" * (2 * MiB)}, follow_redirects=False
    )
    assert big.status_code == 413 and "byte limit" in big.text
    assert "content-security-policy" in big.headers  # the app's headers on the refusal too
    ordinary = web.client.post(
        "/studies", data={"csrf_token": token, "name": "x" * 500_000}, follow_redirects=False
    )
    assert ordinary.status_code not in (411, 413) and ordinary.status_code < 500


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+), so each request's
    # own peak is measured rather than whatever start-up reached.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _zip_of_zeros(name: str, size: int, path: Path, method: int) -> Path:
    """A zip with one entry of `size` zero bytes, written a megabyte at a time."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = method
    with zipfile.ZipFile(path, "w") as zf, zf.open(info, "w", force_zip64=True) as entry:
        for _ in range(size // MiB):
            entry.write(bytes(MiB))
    return path


@pytest.mark.timeout(300)
def test_large_and_explosive_bodies_keep_server_memory_bounded(
    sqlite_env: Env,
    server_factory,  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    make_user("alice", "alice-password", "researcher")
    server: Server = server_factory(sqlite_env)
    pid = server.process.proc.pid
    files = tmp_path_factory.mktemp("bodies")
    cases = [
        # 200 MB of zeros stored as one entry named like an image: refused from its first bytes.
        (
            _zip_of_zeros("big.png", 200 * MiB, files / "big.zip", zipfile.ZIP_STORED),
            "big.png: not a supported image",
        ),
        # 250 MB of zeros deflated to a quarter megabyte: refused from the zip's directory.
        (
            _zip_of_zeros("bomb.png", 250 * MiB, files / "bomb.zip", zipfile.ZIP_DEFLATED),
            "looks like a zip bomb",
        ),
    ]
    with httpx.Client(base_url=server.url, timeout=120) as client:
        browser = WebClient(client)
        assert browser.login("alice", "alice-password").status_code == 303
        token = csrf_from(browser.get("/imagesets").text)

        def send(path: Path) -> httpx.Response:
            data = {"csrf_token": token, "name": "Big", "origin": "real"}
            with path.open("rb") as fh:
                return client.post(
                    "/imagesets", data=data, files={"file": (path.name, fh, "application/zip")}
                )

        # Warm-up: the first upload imports zipfile, Pillow and pydicom into the server.
        small = files / "small.zip"
        small.write_bytes(make_zip(("a.jpeg", CXR[0].read_bytes()), ("b.png", b"text")))
        assert send(small).status_code == 422
        for path, message in cases:
            _reset_peak_rss(pid)
            before = _peak_rss(pid)
            start = time.monotonic()
            response = send(path)
            grew = _peak_rss(pid) - before
            assert response.status_code == 422, response.text[-500:]
            assert message in response.text
            assert grew < RSS_BOUND, f"{path.name}: peak RSS grew {grew / MiB:.0f} MB"
            assert time.monotonic() - start < 60
    with session_scope() as db:
        assert db.scalar(select(func.count()).select_from(ImageSet)) == 0


def _io_counters(pid: int) -> dict[str, int]:
    """The process's I/O counters: rchar (bytes it read, sockets included) and wchar (bytes it
    wrote, temporary files included)."""
    lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines)}


def _stream_chunked(server: Server, path: str, parts: Iterator[bytes]) -> str:
    """POST a multipart body with chunked transfer encoding (no Content-Length) while reading
    the reply, and return the reply; the sender stops when the server stops listening."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())

        def send_body() -> None:
            with contextlib.suppress(OSError):
                for part in parts:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                sock.sendall(b"0\r\n\r\n")

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        reply = b""
        with contextlib.suppress(OSError):
            while not _complete(reply) and (chunk := sock.recv(65536)):
                reply += chunk
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
    return reply.decode(errors="replace")


def _multipart_parts(file_bytes: int) -> Iterator[bytes]:
    yield b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n'
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'
    for _ in range(file_bytes // (64 * 1024)):
        yield bytes(64 * 1024)
    yield b"\r\n--b--\r\n"


def test_multipart_bodies_are_capped_per_route_before_they_reach_the_disk(
    sqlite_env: Env,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server: Server = server_factory(sqlite_env)
    # A 300 MB multipart POST to anonymous /login was spooled to disk in full, then a 403.
    for path in ("/login", "/jobs", "/studies/1/readers"):
        claimed = _reply_to_headers_only(server, path, "multipart/form-data; boundary=b", 300 * MiB)
        assert claimed.startswith("HTTP/1.1 413"), (path, claimed[:300])
        assert "The form is 300 MB, over the 1,048,576 byte limit." in claimed
    # Routes that take files declare their own, larger cap, and it holds as well.
    ratings = _reply_to_headers_only(
        server, "/studies/import", "multipart/form-data; boundary=b", 300 * MiB
    )
    assert ratings.startswith("HTTP/1.1 413") and "over the 50 MB limit" in ratings
    # Without a Content-Length the body is counted as it arrives: 20 MB streamed to /login is
    # refused once past 1 MiB, and the server neither spools it (wchar, which counts every
    # byte written to a temporary file) nor reads on to its end (rchar).
    pid = server.process.proc.pid
    before = _io_counters(pid)
    streamed = _stream_chunked(server, "/login", _multipart_parts(20 * MiB))
    after = _io_counters(pid)
    assert streamed.startswith("HTTP/1.1 413"), streamed[:300]
    assert "The form is over the 1,048,576 byte limit." in streamed
    assert after["wchar"] - before["wchar"] < MiB, after["wchar"] - before["wchar"]
    assert after["rchar"] - before["rchar"] < 10 * MiB, after["rchar"] - before["rchar"]


def test_an_upload_route_takes_files_over_the_small_cap(web: WebClient) -> None:
    # 2 MiB of ratings: over the 1 MiB every route gets, under the import's declared 50 MB.
    rows = "".join(f"reader{i % 7},image{i},real,fake,3\n" for i in range(70_000))
    csv_bytes = ("reader,image,truth,answer,confidence\n" + rows).encode()
    assert len(csv_bytes) > 2 * MiB
    token = csrf_from(web.get("/studies/import").text)
    imported = web.client.post(
        "/studies/import",
        data={"csrf_token": token, "name": "Big but fine"},
        files={"file": ("ratings.csv", csv_bytes, "text/csv")},
        follow_redirects=False,
    )
    assert imported.status_code == 303, imported.text[-500:]
    assert count(ExternalRating) == 70_000
    # The same body to a route that takes no file: refused, and the app's headers are on it.
    refused = web.client.post(
        "/studies",
        data={"csrf_token": token, "name": "x"},
        files={"file": ("ratings.csv", csv_bytes, "text/csv")},
        follow_redirects=False,
    )
    assert refused.status_code == 413 and "over the 1,048,576 byte limit" in refused.text
    assert "content-security-policy" in refused.headers
    assert count(Study) == 1
