"""The display copy of a volume: one byte per voxel that serves both window presets, bounded in
size, slices rendered in the canonical orientation."""

from __future__ import annotations

import cv2
import numpy as np

from service.encoders.preview import (
    MAX_VOXELS,
    WINDOWS,
    codes,
    encode_preview,
    factor_for,
    read_info,
    render_slice,
    window_table,
)
from service.pipeline.params import CtWindow


def test_the_codes_give_each_window_enough_levels() -> None:
    hu = np.linspace(-1350, 240, 5000)
    coded = codes(hu)
    assert coded[0] == 0 and coded[-1] == 255 and np.all(np.diff(coded.astype(int)) >= 0)
    soft = codes(np.linspace(-160, 240, 2000))
    assert len(np.unique(soft)) == 129  # 127..255: 3.1 HU a step in the mediastinum window
    assert len(np.unique(window_table(WINDOWS["lung"]))) > 170  # codes 0..226
    assert len(np.unique(window_table(WINDOWS["mediastinum"]))) >= 128
    assert codes(np.array([-3000.0, 3000.0])).tolist() == [0, 255]  # clipped


def test_a_windowed_slice_is_within_one_code_step_of_the_exact_windowing() -> None:
    rng = np.random.default_rng(0)
    voxels = rng.uniform(-1100, 200, (3, 40, 50)).astype(np.float32)
    blob, info = encode_preview(voxels)
    assert (info.slices, info.rows, info.columns) == (3, 40, 50) and read_info(blob) == info
    for name, window in WINDOWS.items():
        shown = cv2.imdecode(
            np.frombuffer(render_slice(blob, 1, window), np.uint8), cv2.IMREAD_UNCHANGED
        )
        exact = np.clip((voxels[1] - window.low) / window.width, 0, 1) * 255
        step = 255 * 9.4 / window.width if name == "lung" else 255 * 3.2 / window.width
        assert shown.shape == (40, 50) and np.abs(shown - exact).max() <= step + 1


def test_large_volumes_are_shrunk_in_plane() -> None:
    assert factor_for((64, 512, 512)) == 1
    assert factor_for((600, 512, 512)) == 3 and factor_for((300, 512, 512)) == 2
    assert MAX_VOXELS >= 600 * 171 * 171
    blob, info = encode_preview(np.zeros((4, 30, 20), np.float32), max_voxels=4 * 10 * 10)
    assert (info.rows, info.columns) == (10, 7)
    try:
        render_slice(blob, 4, CtWindow())
    except IndexError:
        pass
    else:
        raise AssertionError("slice 4 of 4 rendered")
