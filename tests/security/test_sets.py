"""Red team, finding 1 and 5 of issue 11: a benchmark zip's ``meta.csv`` cannot read files of
the server, cannot make the worker decode bombs, and a badly encoded manifest is a 400."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest

from tests.api.test_errors import assert_problem

HEADER = "id,image,group,finding,covid,modality,source,license\n"


def png(height: int = 32, width: int = 32, value: int = 128) -> bytes:
    ok, data = cv2.imencode(".png", np.full((height, width), value, np.uint8))
    assert ok
    return data.tobytes()


def labelled_zip(rows: str, extra: dict[str, bytes] | None = None, manifest: bytes | None = None):
    """A zip in our layout with one real image ``images/a.png`` and its masks, ``rows`` as
    the manifest's rows (or ``manifest`` as its whole bytes)."""
    buffer = io.BytesIO()
    files = {
        "meta.csv": manifest if manifest is not None else (HEADER + rows).encode(),
        "images/a.png": png(),
        "masks/lung/a.png": png(value=255),
        "masks/infection/a.png": png(value=0),
        **(extra or {}),
    }
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def post(client, data: bytes):
    return client.post(
        "/v1/benchmark", files={"file": ("set.zip", data)}, params={"models": "threshold"}
    )


def test_a_good_set_is_scored(client):
    response = post(client, labelled_zip("a,images/a.png,p1,normal,no,CXR,test,test\n"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "done"


@pytest.mark.parametrize(
    "image",
    [
        "/etc/passwd",
        "/dev/zero",
        "../../../../etc/passwd",
        "images/../../outside.png",
        "C:/Windows/win.ini",
        "images\\\\a.png",
        "",
    ],
)
def test_an_image_path_leaving_the_set_is_refused(client, image):
    response = post(client, labelled_zip(f"a,{image},p1,normal,no,CXR,test,test\n"))
    assert_problem(response, 400, "image of meta.csv row 2")


@pytest.mark.parametrize("sample_id", ["../../../etc/hostname", "..", "/etc/hostname", "a\\b"])
def test_an_id_leading_to_a_mask_outside_the_set_is_refused(client, sample_id):
    response = post(client, labelled_zip(f"{sample_id},images/a.png,p1,normal,no,CXR,t,t\n"))
    assert_problem(response, 400, "meta.csv row 2")


def test_whether_a_server_path_exists_is_not_told(client):
    exists = post(client, labelled_zip("a,/etc/passwd,p1,normal,no,CXR,t,t\n")).json()
    missing = post(client, labelled_zip("a,/no/such/file,p1,normal,no,CXR,t,t\n")).json()
    assert exists["detail"] == missing["detail"]


def test_an_image_that_is_missing_from_the_set_is_a_400(client):
    response = post(client, labelled_zip("a,images/b.png,p1,normal,no,CXR,t,t\n"))
    assert_problem(response, 400, "not in the set")


def test_a_decompression_bomb_as_a_mask_is_not_decoded(client):
    """A 30000 x 30000 PNG (a few hundred KB) as the lung mask: refused from its header."""
    bomb = png(30000, 30000, 0)
    data = labelled_zip("a,images/a.png,p1,normal,no,CXR,t,t\n", {"masks/lung/a.png": bomb})
    response = post(client, data)
    body = response.json()
    assert body["status"] == "failed"
    assert "more than the limit" in body["error"]


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        ((HEADER + "a,images/a.png,Müller,normal,no,CXR,t,t\n").encode("cp1252"), "not UTF-8"),
        (bytes(range(256)) * 4, "not UTF-8"),
        (b"id,image\n\x00\x01,images/a.png\n", "NUL"),
        (b"name,file\nx,y\n", "lacks the column(s) id, image"),
    ],
)
def test_a_manifest_that_is_not_utf8_csv_is_a_400(client, manifest, fragment):
    assert_problem(post(client, labelled_zip("", manifest=manifest)), 400, fragment)


def test_a_utf8_manifest_with_bom_and_semicolons_is_read(client):
    text = HEADER.replace(",", ";") + "a;images/a.png;Müller;normal;no;CXR;t;t\n"
    response = post(client, labelled_zip("", manifest=b"\xef\xbb\xbf" + text.encode()))
    assert response.status_code == 200, response.text
    assert response.json()["results"]["entries"][0]["rows"][0]["group"] == "Müller"
