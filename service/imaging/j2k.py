"""A multi-threaded JPEG 2000 decoder for pydicom: OpenJPEG through imagecodecs.

pydicom's default JPEG 2000 plugin (pylibjpeg-openjpeg) decodes with one thread; a lossless
chest radiograph of 1955x1841 then takes about half a second, far longer than the network.
imagecodecs runs the same OpenJPEG library with its own thread pool. This module is a pydicom
decoder plugin (``is_available``, ``DECODER_DEPENDENCIES``, ``decode_frame``); pydicom still
does the rest (signedness, bit depth, reshaping), as for its own plugins. The number of threads
comes from the decoding option ``j2k_threads`` (default 1).

Used only when imagecodecs is installed (it is a dependency of the service); its output is
identical to pylibjpeg's on the real files of the test suite.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any

from pydicom import uid
from pydicom.pixels.common import PhotometricInterpretation as PI
from pydicom.pixels.decoders import JPEG2000Decoder, JPEG2000LosslessDecoder

PLUGIN = "lungseg-imagecodecs"
SYNTAXES = (uid.JPEG2000Lossless, uid.JPEG2000)
DECODER_DEPENDENCIES = {syntax: ("imagecodecs>=2024.1",) for syntax in SYNTAXES}


def _codecs() -> ModuleType | None:
    try:
        return importlib.import_module("imagecodecs")
    except (ImportError, RuntimeError, AttributeError):  # missing, or built for another numpy:
        return None  # the plugin reports itself unavailable and pylibjpeg decodes instead


CODECS = _codecs()


def is_available(syntax: str) -> bool:
    """Whether this plugin can decode ``syntax`` here (pydicom's plugin protocol)."""
    return CODECS is not None and syntax in SYNTAXES and bool(CODECS.JPEG2K.available)


def decode_frame(src: bytes, runner: Any) -> bytes:
    """Decode one JPEG 2000 codestream to bytes laid out as pydicom's ``runner`` expects."""
    threads = int(runner.get_option("j2k_threads", 1))
    if CODECS is None:
        raise RuntimeError("imagecodecs is not installed")
    array = CODECS.jpeg2k_decode(src, numthreads=max(1, threads))
    if runner.photometric_interpretation in (PI.YBR_ICT, PI.YBR_RCT):
        runner.set_option("photometric_interpretation", PI.RGB)  # OpenJPEG returns RGB
    if array.ndim == 3:
        runner.set_option("planar_configuration", 0)  # samples interleaved per pixel
    precision = runner.get_option("j2k_precision", runner.bits_stored)
    runner.set_option("bits_allocated", 8 if precision <= 8 else 16 if precision <= 16 else 32)
    return bytes(array.tobytes())


def register() -> bool:
    """Add this plugin to pydicom's JPEG 2000 decoders (once); whether it can be used."""
    for decoder in (JPEG2000LosslessDecoder, JPEG2000Decoder):
        with contextlib.suppress(ValueError):  # added before: pydicom refuses a second one
            decoder.add_plugin(PLUGIN, (__name__, "decode_frame"))
    return PLUGIN in JPEG2000LosslessDecoder.available_plugins


AVAILABLE = register()
