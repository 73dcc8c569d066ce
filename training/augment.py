"""Augmentation suited to radiographs and CT slices, applied between ``prepare`` and ``normalise``.

Geometry: small rotations, isotropic scale and shifts (one affine warp for image and masks, so
they stay aligned). No left-right flips: the heart and mediastinum are left of centre in every
image, and a flip teaches anatomy that does not occur. Intensity: brightness, contrast, gamma,
mild Gaussian noise and blur (image only).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random transforms (``enabled=False`` returns inputs unchanged).

    Attributes:
        rotate_deg: rotation drawn from ``[-rotate_deg, rotate_deg]`` degrees.
        scale: isotropic scale drawn from ``[1 - scale, 1 + scale]``.
        shift: translation drawn from ``[-shift, shift]`` x the image size, per axis.
        brightness: added offset drawn from ``[-brightness, brightness]`` (display units).
        contrast: contrast factor drawn from ``[1 - contrast, 1 + contrast]`` around the mean.
        gamma: ``log`` of the gamma exponent drawn from ``[-gamma, gamma]``.
        noise_std: Gaussian noise standard deviation drawn from ``[0, noise_std]``.
        blur_prob, blur_sigma: probability of a Gaussian blur with sigma in ``[0.3, blur_sigma]``.
    """

    enabled: bool = True
    rotate_deg: float = 10.0
    scale: float = 0.1
    shift: float = 0.06
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.2
    noise_std: float = 0.02
    blur_prob: float = 0.2
    blur_sigma: float = 1.0


def affine_matrix(
    size: tuple[int, int], params: AugmentParams, rng: np.random.Generator
) -> np.ndarray:
    """A random 2x3 affine matrix (rotation about the centre, scale, shift) for ``(H, W)``."""
    height, width = size
    angle = rng.uniform(-params.rotate_deg, params.rotate_deg)
    scale = rng.uniform(1.0 - params.scale, 1.0 + params.scale)
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, scale)
    matrix[0, 2] += rng.uniform(-params.shift, params.shift) * width
    matrix[1, 2] += rng.uniform(-params.shift, params.shift) * height
    return matrix


def warp(image: np.ndarray, masks: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``matrix`` to a float ``(H, W)`` image (bilinear) and ``(C, H, W)`` uint8 masks.

    Masks are warped bilinearly and thresholded at 0.5, so they move exactly like the image.
    Borders replicate the edge pixels in both, keeping them consistent.
    """
    out = _warp_one(image, matrix)
    warped = [_warp_one(m, matrix) >= 0.5 for m in masks]
    return out, np.stack(warped).astype(np.uint8) if warped else masks


def _warp_one(plane: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Bilinear warp of one ``(H, W)`` plane as float32, edge pixels replicated."""
    height, width = plane.shape
    src = plane.astype(np.float32)
    out = cv2.warpAffine(
        src, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(out, dtype=np.float32)


def intensity(image: np.ndarray, params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Random brightness/contrast/gamma/noise/blur of a [0, 1] float image; result in [0, 1]."""
    mean = float(image.mean())
    out = (image - mean) * rng.uniform(1 - params.contrast, 1 + params.contrast) + mean
    out = np.clip(out + rng.uniform(-params.brightness, params.brightness), 0.0, 1.0)
    out = out ** np.float32(np.exp(rng.uniform(-params.gamma, params.gamma)))
    if params.blur_prob > 0 and rng.random() < params.blur_prob:
        sigma = rng.uniform(0.3, params.blur_sigma)
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, sigmaY=sigma))
    if params.noise_std > 0:
        std = rng.uniform(0.0, params.noise_std)
        out = out + rng.normal(0.0, std, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment(
    image: np.ndarray, masks: np.ndarray, params: AugmentParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one sample.

    Args:
        image: float ``(H, W)`` display values in [0, 1].
        masks: uint8 0/1 ``(C, H, W)`` (lung, infection).
        params: the transform ranges.
        rng: the random generator (seeded by the training loop).

    Returns:
        ``(image, masks)``: float32 ``(H, W)`` in [0, 1] and uint8 ``(C, H, W)``.
    """
    if not params.enabled:
        return image.astype(np.float32), masks
    image, masks = warp(image, masks, affine_matrix(image.shape[:2], params, rng))
    return intensity(image, params, rng), masks
