"""The ``nifti`` output format of a volume: its label map as a gzipped NIfTI-1 file in memory.

Voxel values (uint8): 0 background, 1 lung, 2 infection (infection is part of the lung);
intent ``label``, scaling off (slope 1, intercept 0), ``cal_min`` 0, ``cal_max`` 2.

* **NIfTI input**: the input's own array shape (as its header stores it: a 4-D file with one
  volume keeps its trailing axis), voxel for voxel in the input's axis order and flips, with a
  copy of the input's header: its sform and qform (matrices and codes) exactly as stored, its
  units and NIfTI version (NIfTI-2 in, NIfTI-2 out). The mask overlays the input in any viewer.
* **DICOM series**: the series' voxel grid in its sorted slice order (ascending along the slice
  normal, as :class:`~service.imaging.volume.InputLayout` holds it) stored as NIfTI does it,
  ``i`` along a row (DICOM column index), ``j`` down a column (row index), ``k`` the slice; each
  slice in its stored pixel order. The affine comes from the DICOM geometry (LPS: Image
  Position / Orientation (Patient), Pixel Spacing, the slice step) converted to NIfTI's RAS
  (``diag(-1, -1, 1) @ LPS``), written as sform and qform with code 1 (scanner), units mm: the
  same convention as dcm2niix, so the file lines up with a dcm2niix conversion of the series.

Written through nibabel in memory (``to_bytes``) and gzipped here (mtime 0: the same result
gives the same bytes); nothing touches the disk.
"""

from __future__ import annotations

import gzip

import numpy as np
from nibabel.nifti1 import Nifti1Header, Nifti1Image
from nibabel.nifti2 import Nifti2Header, Nifti2Image

from service.pipeline.result import EncodedFile
from service.pipeline.volume import INFECTION, VolumeSegmentation

FORMAT = "nifti"
MEDIA_TYPE = "application/gzip"
FILENAME = "labels.nii.gz"
DESCRIPTION = b"lungseg labels: 0 background, 1 lung, 2 infection"
DICOM_TO_NIFTI_AXES = np.array(
    [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""NIfTI index ``(i, j, k, 1)`` -> the DICOM stack's ``(slice, row, column, 1)``."""


def label_image(result: VolumeSegmentation) -> Nifti1Image:
    """The label map as a nibabel image lined up with the input (see the module rules)."""
    labels = result.labels_in_input()
    stored = result.layout.nifti_header
    if stored is not None:
        header = stored.copy()
        shape = tuple(int(n) for n in header.get_data_shape())
        if int(np.prod(shape)) == labels.size:
            labels = labels.reshape(shape)
        image_class = Nifti2Image if isinstance(header, Nifti2Header) else Nifti1Image
        header.set_data_dtype(np.uint8)
        image = image_class(labels, None, header=header)  # sform / qform as stored
    else:
        affine = result.layout.affine_ras @ DICOM_TO_NIFTI_AXES
        image = Nifti1Image(np.ascontiguousarray(labels.transpose(2, 1, 0)), affine)
        image.set_sform(affine, code=1)
        image.set_qform(affine, code=1)
        image.header.set_xyzt_units("mm")
    _label_header(image.header)
    return image


def _label_header(header: Nifti1Header) -> None:
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    header.set_intent("label")
    header["cal_min"], header["cal_max"] = 0, INFECTION
    header["descrip"] = DESCRIPTION


def nifti_bytes(result: VolumeSegmentation) -> bytes:
    """The ``.nii.gz`` bytes of :func:`label_image`."""
    return gzip.compress(label_image(result).to_bytes(), compresslevel=6, mtime=0)


def encode_volume(result: VolumeSegmentation) -> EncodedFile:
    """The label map as a ``.nii.gz`` file (``application/gzip``)."""
    return EncodedFile(FORMAT, MEDIA_TYPE, nifti_bytes(result), FILENAME)
