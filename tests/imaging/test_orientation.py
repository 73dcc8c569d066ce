"""to_canonical / from_canonical on small arrays: exact layouts, every axis permutation and flip,
oblique and degenerate affines."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.errors import UnsupportedMediaError
from service.imaging.orientation import from_canonical, spacing_of, to_canonical


def _affine(perm: tuple[int, ...], signs: tuple[int, ...], sizes=(2.0, 3.0, 5.0)) -> np.ndarray:
    """Voxel axis i runs along LPS world axis perm[i], direction signs[i], sizes[i] mm."""
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (world, sign, size) in enumerate(zip(perm, signs, sizes, strict=True)):
        affine[world, axis] = sign * size
    affine[:3, 3] = [10.0, -20.0, 30.0]
    return affine


def _world(affine: np.ndarray, index) -> np.ndarray:
    return (affine @ np.array([*index, 1.0]))[:3]


def test_lps_aligned_array_is_transposed_to_slice_row_column() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # axes along +x, +y, +z
    canonical = to_canonical(array, _affine((0, 1, 2), (1, 1, 1)))
    assert canonical.voxels.shape == (4, 3, 2) and canonical.voxels.dtype == np.float32
    assert np.array_equal(canonical.voxels, array.transpose(2, 1, 0))
    expected = np.array(
        [[0.0, 0.0, 2.0, 10.0], [0.0, 3.0, 0.0, -20.0], [5.0, 0.0, 0.0, 30.0], [0, 0, 0, 1]]
    )
    assert np.array_equal(canonical.affine, expected)
    assert spacing_of(canonical.affine) == (5.0, 3.0, 2.0)
    assert canonical.warnings == () and canonical.obliquity_deg == 0.0


def test_flips_exactly() -> None:
    array = np.arange(8).reshape(2, 2, 2)  # slice axis along -z, rows along +y, columns along -x
    canonical = to_canonical(array, _affine((2, 1, 0), (-1, 1, -1)))
    assert canonical.voxels.tolist() == [[[5, 4], [7, 6]], [[1, 0], [3, 2]]]
    assert np.array_equal(from_canonical(canonical.voxels, canonical.to_input), array)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("signs", list(itertools.product((1, -1), repeat=3)))
def test_every_orientation_round_trips_and_keeps_positions(perm, signs) -> None:
    rng = np.random.default_rng(7)
    array = rng.permutation(60).reshape(3, 4, 5)  # unique values: find each voxel again
    affine = _affine(perm, signs)
    canonical = to_canonical(array, affine)
    assert np.array_equal(from_canonical(canonical.voxels, canonical.to_input), array)
    linear = canonical.affine[:3, :3]  # slice -> +z, row -> +y, column -> +x
    assert linear[2, 0] > 0 and linear[1, 1] > 0 and linear[0, 2] > 0
    assert np.count_nonzero(linear) == 3
    for index in [(0, 0, 0), (2, 3, 4), (1, 2, 0)]:
        value = array[index]
        found = tuple(int(i) for i in np.argwhere(canonical.voxels == value)[0])
        np.testing.assert_allclose(_world(canonical.affine, found), _world(affine, index))


def test_oblique_takes_the_closest_axes_with_a_warning() -> None:
    angle = np.radians(10.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation
    array = np.arange(27.0).reshape(3, 3, 3)
    canonical = to_canonical(array, affine)
    assert canonical.obliquity_deg == pytest.approx(10.0)
    assert canonical.warnings == (
        "the volume is oblique (an axis is 10.0 degrees from the patient axes): it is shown "
        "in the closest axial orientation, without resampling",
    )
    assert np.array_equal(canonical.voxels, array.transpose(2, 1, 0))
    np.testing.assert_allclose(canonical.affine[:3, 2], rotation[:, 0])  # true direction kept
    slight = affine.copy()
    slight[:3, :3] = np.eye(3)
    slight[1, 0] = np.tan(np.radians(0.5))
    assert to_canonical(array, slight).warnings == ()


def test_degenerate_affine_is_refused() -> None:
    with pytest.raises(UnsupportedMediaError, match="degenerate"):
        to_canonical(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))
    nan = np.eye(4)
    nan[0, 3] = np.nan
    with pytest.raises(UnsupportedMediaError, match="degenerate"):
        to_canonical(np.zeros((2, 2, 2)), nan)
