"""Photo uploads have a pixel limit checked from the image header, well under Pillow's
decompression-bomb limit, and are decoded in bounded memory: a JPEG at the smallest scale
that still gives its thumbnail. A 50-megapixel phone photo is accepted."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.inspections import MAX_PHOTO_PIXELS, THUMBNAIL_PX
from tests.conftest import bearer, make_settings, query
from tests.test_inspections import complete_answers, room, upload_body

KBH = 101
INSPECTOR = "inspektoer-1"
PHONE = (8660, 5773)  # 50 megapixels
ROOT = Path(__file__).resolve().parent.parent


def blank_png(width: int, height: int) -> bytes:
    """A black one-bit PNG: a few KB however many pixels it declares (a decompression bomb
    when there are many)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    line = bytes(1 + (width + 7) // 8)  # filter type 0 and the row's bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(line) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0,
                                                                 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def phone_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", PHONE, (120, 130, 140)).save(out, "JPEG", quality=60)
    return out.getvalue()


@pytest.fixture
def s(db_url):
    cvr = query(db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0][0]
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beskyt_rum_kode = 3 AND beliggenhedskommune = %s AND cvr_kode = %s"
                               " ORDER BY objekt_id LIMIT 1", [KBH, cvr])[0]
    query(db_url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) VALUES "
                  "(%s, %s, %s, 'setup')", [shelter, INSPECTOR, cvr])
    with TestClient(create_app(make_settings(db_url)),
                    headers=bearer(["inspector"], subject=INSPECTOR)) as c:
        eid = str(uuid.uuid4())
        r = c.put(f"/eftersyn/{eid}", headers={"Content-Type": "application/json"},
                  content=json.dumps(upload_body({"shelter": str(shelter)}, complete_answers(),
                                                 [room()], status="kladde")))
        assert r.status_code == 201, r.text
        yield c, db_url, eid


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # at open, refused
def test_the_pixel_limit_refuses_a_bomb_from_its_header_and_accepts_a_phone_photo(s):
    c, url, eid = s
    assert PHONE[0] * PHONE[1] <= MAX_PHOTO_PIXELS < Image.MAX_IMAGE_PIXELS * 2
    for size in ((13000, 13000), (8000, 8000)):  # 169 and 64 megapixels
        bomb = blank_png(*size)
        assert len(bomb) < 100_000
        r = c.put(f"/eftersyn/{eid}/fotos/{uuid.uuid4()}", content=bomb,
                  headers={"Content-Type": "image/png"})
        assert r.status_code == 413, (size, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == "body"
        assert f"{size[0]} × {size[1]}" in r.json()["detail"]
    assert query(url, "SELECT count(*) FROM ly.eftersyn_foto") == [(0,)]
    fid = str(uuid.uuid4())
    r = c.put(f"/eftersyn/{eid}/fotos/{fid}", content=phone_jpeg(),
              headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 201, r.text
    assert (r.json()["bredde"], r.json()["hoejde"]) == PHONE
    thumb = c.get(f"/eftersyn/{eid}/fotos/{fid}", params={"miniature": True})
    with Image.open(io.BytesIO(thumb.content)) as t:
        assert t.size == (THUMBNAIL_PX, round(THUMBNAIL_PX * PHONE[1] / PHONE[0]))
    assert query(url, "SELECT bredde, hoejde FROM ly.eftersyn_foto") == [PHONE]


_MEASURE = """
import json, resource, sys
from service.inspections import _image_facts
from service.errors import Problem
out = {}
for name, ctype in (("bomb.png", "image/png"), ("phone.jpg", "image/jpeg")):
    data = open(sys.argv[1] + "/" + name, "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        result = list(_image_facts(data, ctype)[:2])
    except Problem as exc:
        result = exc.status
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    out[name] = [result, grew // 1024]
print(json.dumps(out))
"""


def test_photos_are_decoded_in_bounded_memory(tmp_path):
    """Measured in a fresh process, whose peak memory only the decodes can raise: the bomb
    is refused without decoding it (it would take about a gigabyte), and a 50-megapixel
    JPEG (150 MB of pixels) is decoded at an eighth of its size for its thumbnail."""
    (tmp_path / "bomb.png").write_bytes(blank_png(13000, 13000))
    (tmp_path / "phone.jpg").write_bytes(phone_jpeg())
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", _MEASURE, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert measured["bomb.png"][0] == 413 and measured["bomb.png"][1] < 50, measured
    assert measured["phone.jpg"][0] == list(PHONE) and measured["phone.jpg"][1] < 60, measured
