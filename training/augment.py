"""Augmentation suited to radiographs and CT slices, applied between ``prepare`` and ``normalise``.

Geometry: small rotations, isotropic scale and shifts (one affine warp for image and masks, so
they stay aligned). No left-right flips: the heart and mediastinum are left of centre in every
image, and a flip teaches anatomy that does not occur. Intensity: brightness, contrast, gamma,
mild Gaussian noise and blur (image only).

Clinical-image transforms (each with its own probability, all off by default so that older
configs keep their behaviour; the ``finetune`` preset turns them on). They imitate what the
full-size clinical radiographs show and the curated 8-bit PNGs do not:

* **tone curve**: a random monotone (inversion-free) global curve after a random window/level,
  like a different VOI LUT or processing of a CR;
* **unsharp masking**: mild edge enhancement, typical of CR/DR processing;
* **collimation**: dark or bright bands cutting 0-15 % of the image from random sides (shutters,
  unexposed borders); the masks are cut there too, since no lung is visible under them;
* **burnt-in markers and text**: small bright rectangles and letters (``cv2.putText``) anywhere
  (side markers, annotations); masks unchanged: the lung is still under a marker;
* **JPEG re-encoding** at quality 30-90 (images exported from PACS or pasted into papers).

Masks are unchanged by every intensity and marker transform.
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
        tone_prob, tone_strength: probability of a random window/level plus monotone tone curve;
            ``tone_strength`` bounds the window shift and the curve's departure from identity.
        unsharp_prob, unsharp_amount, unsharp_sigma: probability of unsharp masking
            ``x + a (x - blur_s(x))`` with ``a`` in ``[0.2, unsharp_amount]`` and ``s`` in
            ``[1, unsharp_sigma]`` pixels.
        collimation_prob, collimation_max: probability of collimation bands, each covering up to
            ``collimation_max`` of the image from one of 1-4 random sides.
        marker_prob: probability of 1-3 burnt-in markers (rectangles or text).
        jpeg_prob, jpeg_quality_min, jpeg_quality_max: probability of JPEG re-encoding at a
            quality drawn from ``[jpeg_quality_min, jpeg_quality_max]``.
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
    tone_prob: float = 0.0
    tone_strength: float = 0.15
    unsharp_prob: float = 0.0
    unsharp_amount: float = 1.0
    unsharp_sigma: float = 3.0
    collimation_prob: float = 0.0
    collimation_max: float = 0.15
    marker_prob: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality_min: int = 30
    jpeg_quality_max: int = 90


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


def tone_curve(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A random window/level, then a random monotone increasing curve (never an inversion).

    The window keeps ``[low, high]`` with ``low`` in ``[-s, s]`` and ``high`` in
    ``[1 - s, 1 + s]``; the curve passes through 0, three random knots and 1, its increments
    drawn from a Dirichlet distribution mixed with the identity (weight ``2 s`` at most).
    """
    low = rng.uniform(-strength, strength)
    high = rng.uniform(1.0 - strength, 1.0 + strength)
    out = np.clip((image - low) / max(high - low, 1e-3), 0.0, 1.0)
    knots = np.linspace(0.0, 1.0, 5)
    steps = rng.dirichlet(np.full(4, 4.0))
    mix = rng.uniform(0.0, min(2.0 * strength, 1.0))
    values = (1.0 - mix) * knots + mix * np.concatenate([[0.0], np.cumsum(steps)])
    return np.interp(out, knots, values).astype(np.float32)


def unsharp(image: np.ndarray, params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Unsharp masking (edge enhancement) with a random amount and radius."""
    sigma = rng.uniform(1.0, max(params.unsharp_sigma, 1.0))
    amount = rng.uniform(0.2, max(params.unsharp_amount, 0.2))
    blurred = np.asarray(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma))
    return np.clip(image + amount * (image - blurred), 0.0, 1.0).astype(np.float32)


def collimate(
    image: np.ndarray, masks: np.ndarray, max_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Dark or bright bands over 1-4 random sides, each up to ``max_fraction`` of the image.

    Under a band nothing is visible, so the masks are cleared there as well.
    """
    out, cut = image.copy(), masks.copy()
    height, width = image.shape
    sides = rng.permutation(4)[: rng.integers(1, 5)]
    for side in sides:
        extent = rng.uniform(0.0, max_fraction)
        value = rng.uniform(0.0, 0.08) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
        rows = round(extent * height)
        cols = round(extent * width)
        region = {
            0: (slice(0, rows), slice(None)),
            1: (slice(height - rows, height), slice(None)),
            2: (slice(None), slice(0, cols)),
            3: (slice(None), slice(width - cols, width)),
        }[int(side)]
        if (side < 2 and rows == 0) or (side >= 2 and cols == 0):
            continue
        out[region] = value
        cut[(slice(None), *region)] = 0
    return out, cut


LETTERS = "LRAPSUPINEPORTABLEABCDEFGHKMNTXYZ0123456789"
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX)


def burn_markers(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-3 bright (rarely dark) burnt-in markers anywhere: filled rectangles or short text.

    Drawn on an 8-bit coverage canvas (OpenCV's text needs 8 bits; anti-aliased) and blended in.
    """
    out = image.copy()
    height, width = image.shape
    scale = min(height, width) / 256.0
    for _ in range(int(rng.integers(1, 4))):
        value = float(rng.uniform(0.85, 1.0) if rng.random() < 0.85 else rng.uniform(0.0, 0.1))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        canvas = np.zeros((height, width), np.uint8)
        if rng.random() < 0.4:
            w = int(rng.integers(3, max(int(20 * scale), 4)))
            h = int(rng.integers(3, max(int(14 * scale), 4)))
            cv2.rectangle(canvas, (x, y), (x + w, y + h), 255, -1)
        else:
            text = "".join(rng.choice(list(LETTERS), int(rng.integers(1, 6))))
            font = FONTS[int(rng.integers(len(FONTS)))]
            size = float(rng.uniform(0.3, 0.9) * scale)
            thickness = int(rng.integers(1, 3))
            cv2.putText(canvas, text, (x, y), font, size, 255, thickness, cv2.LINE_AA)
        alpha = canvas.astype(np.float32) / np.float32(255.0)
        out = out * (1.0 - alpha) + np.float32(value) * alpha
    return out.astype(np.float32)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as 8-bit JPEG at ``quality`` and decode again (block artefacts, quantisation)."""
    as_u8 = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", as_u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid 2-D uint8 array
        return image
    decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    if decoded is None:  # pragma: no cover - decoding what OpenCV just encoded
        return image
    return np.asarray(decoded, np.float32) / np.float32(255.0)


def clinical(
    image: np.ndarray, masks: np.ndarray, params: AugmentParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The clinical-image transforms after the photometric ones (see the module docstring):
    unsharp masking, collimation, markers, then JPEG (the order of a real image's life)."""
    if params.unsharp_prob > 0 and rng.random() < params.unsharp_prob:
        image = unsharp(image, params, rng)
    if params.collimation_prob > 0 and rng.random() < params.collimation_prob:
        image, masks = collimate(image, masks, params.collimation_max, rng)
    if params.marker_prob > 0 and rng.random() < params.marker_prob:
        image = burn_markers(image, rng)
    if params.jpeg_prob > 0 and rng.random() < params.jpeg_prob:
        quality = int(rng.integers(params.jpeg_quality_min, params.jpeg_quality_max + 1))
        image = jpeg(image, quality)
    return np.clip(image, 0.0, 1.0).astype(np.float32), masks


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
    if params.tone_prob > 0 and rng.random() < params.tone_prob:
        image = tone_curve(image, params.tone_strength, rng)
    return clinical(intensity(image, params, rng), masks, params, rng)
