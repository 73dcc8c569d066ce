"""The multi-threaded JPEG 2000 path: a codestream built in code decodes exactly, with any
number of threads; a cut one is refused; decoding threads are shared among concurrent uploads."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from service.errors import UnsupportedMediaError
from service.imaging import decode, j2k
from service.models.gates import SharedThreads
from tests.imaging.test_errors import grey_header, to_bytes

STORED = np.random.default_rng(7).integers(0, 4096, size=(48, 64), dtype=np.uint16)  # 12-bit


def _ct_j2k(codestream: bytes) -> bytes:
    ds = grey_header("CT", 48, 64, 16, RescaleIntercept=-1024, RescaleSlope=1)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = encapsulate([codestream])
    return to_bytes(ds, JPEG2000Lossless)


@pytest.fixture(scope="module")
def codestream() -> bytes:
    return bytes(
        imagecodecs.jpeg2k_encode(
            STORED, codecformat=imagecodecs.JPEG2K.CODEC.J2K, reversible=True, bitspersample=12
        )
    )


def test_the_plugin_is_registered_for_both_jpeg2000_syntaxes():
    assert j2k.AVAILABLE
    assert all(j2k.is_available(syntax) for syntax in j2k.SYNTAXES)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_lossless_jpeg2000_ct_decodes_to_exact_hounsfield_units(codestream: bytes, threads: int):
    image = decode(_ct_j2k(codestream), threads=threads)
    assert (image.modality, image.units, image.pixels.shape) == ("ct", "hu", (1, 48, 64))
    np.testing.assert_array_equal(image.pixels[0], STORED.astype(np.float32) - 1024)


def test_a_cut_codestream_is_refused_not_crashed(codestream: bytes):
    with pytest.raises(UnsupportedMediaError, match="could not be decoded"):
        decode(_ct_j2k(codestream[: len(codestream) // 2]), threads=2)


def test_decoding_threads_are_shared_among_concurrent_uploads():
    shared = SharedThreads(4)
    with shared as first, shared as second, shared as third:
        assert (first, second, third) == (4, 2, 1)
    with shared as alone:
        assert alone == 4


def test_without_imagecodecs_pydicoms_own_plugin_decodes_the_same(
    codestream: bytes, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(j2k, "AVAILABLE", False)
    image = decode(_ct_j2k(codestream), threads=2)
    np.testing.assert_array_equal(image.pixels[0], STORED.astype(np.float32) - 1024)
