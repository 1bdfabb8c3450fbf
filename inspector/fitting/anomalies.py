"""Synthetic defects with exact masks on good images: what a fit can tune itself against.

A fit sees good images only. To choose among candidate configurations it holds some
good images out, puts synthetic defects on copies and keeps the configuration whose
scores (and anomaly maps) separate those copies from the clean ones best. So the
defects must be varied (``DEFECT_KINDS``), sized for what the model sees, visible and
exactly masked:

- sizes are in *model pixels*: the graph resizes every frame to ``model_side`` squared
  (aspect not kept), so shapes are drawn in that square and stretched onto the frame; a
  3 px scratch on a 1024-px-high frame is ~12 native px, and it stays 3 px for the model;
- the mean change inside the mask is at least ``MIN_CHANGE`` grey levels, whatever the
  surface; pixels outside the mask are bit-identical to the input;
- every draw comes from the ``numpy.random.Generator`` passed in: same seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import cv2
import numpy as np

DEFECT_KINDS: tuple[str, ...] = ("patch", "texture", "scratch", "blob", "shift")
MIN_SIDE = 32  # smaller frames have no room for a defect and its clean surroundings
MIN_CHANGE = 8.0  # mean |change| inside the mask, grey levels averaged over channels
REGION_SIZE = (0.04, 0.15)  # patch, texture, shift: extent, as a fraction of the model side
BLOB_SIZE = (3.0, 12.0)  # blob diameter, model pixels
SCRATCH_WIDTH = (1.0, 3.0)  # model pixels
SCRATCH_LENGTH = (0.06, 0.3)  # fraction of the model side
_CUT = 0.1  # blend weights below this are dropped: the mask is exactly where weight > 0


@dataclass(frozen=True)
class SyntheticDefect:
    """A copy of a good image with one synthetic defect, and exactly where it is."""

    image: np.ndarray  # the input's shape and dtype (uint8)
    mask: np.ndarray  # bool (H, W): the defect; every pixel outside it is unchanged
    kind: str
    area_fraction: float  # mask.mean()


def make_defect(
    image: np.ndarray,
    rng: np.random.Generator,
    kind: str | None = None,
    *,
    model_side: int = 256,
    donor: np.ndarray | None = None,
) -> SyntheticDefect:
    """One defect of ``kind`` (random when None) on a copy of ``image``; the input is untouched.

    ``model_side`` is the side the model resizes frames to: sizes are drawn in its pixels.
    ``donor`` is another good image for ``"patch"`` (resized and converted to match); without
    one the patch comes from elsewhere in ``image``.
    """
    pixels = _pixels(image, "image")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if kind is None:
        kind = DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]
    elif kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")
    if not isinstance(model_side, Integral) or model_side < 16:
        raise ValueError(f"model_side must be an int >= 16, got {model_side!r}")
    source = pixels if donor is None else _donor(donor, image)
    h, w = image.shape[:2]
    scale = np.array([w, h], np.float64) / int(model_side)  # native pixels per model pixel (x, y)
    outline, soft = _outline(kind, rng, model_side, scale)
    low, high = outline.min(0), outline.max(0)
    centre = [rng.uniform(-low[i], model_side - high[i]) for i in (0, 1)]  # wholly in the frame
    (ys, xs), alpha = _rasterise((outline + centre) * scale, soft * scale, (h, w))
    base = pixels[ys, xs].astype(np.float32)
    target, alpha = _target(kind, rng, base, alpha, source, (ys, xs), scale, donor is None)
    mask = alpha > 0
    # Pull an invisible defect towards the far end of the grey scale until it shows; at the far
    # end the mean change is over _CUT * 127 grey levels, as every weight is at least _CUT.
    far = np.where(base[mask].mean(0) < 128, 255.0, 0.0)
    for pull in (0.0, 0.25, 0.5, 1.0):
        mixed = target * (1 - pull) + far * pull
        blended = np.rint(np.clip(base + (mixed - base) * alpha[..., None], 0, 255))
        if np.abs(blended - base).mean(axis=2)[mask].mean() >= MIN_CHANGE:
            break
    out = image.copy()
    region = out[ys, xs]  # a view: writes land in ``out``
    region[mask] = blended[mask].astype(np.uint8).reshape(-1, *region.shape[2:])
    full = np.zeros((h, w), bool)
    full[ys, xs] = mask
    return SyntheticDefect(out, full, kind, float(full.mean()))


def make_defects(
    images: Sequence[np.ndarray],
    seed: int,
    per_image: int = 1,
    kinds: Sequence[str] = DEFECT_KINDS,
    model_side: int = 256,
) -> list[SyntheticDefect]:
    """``per_image`` defects per image, kinds in turn so that each is represented.

    Defect ``n`` draws from ``default_rng([seed, n])`` alone, so the same inputs give the same
    bytes. Patches come from the next image (from the image itself when there is only one).
    """
    if len(images) == 0:
        raise ValueError("images is empty")
    if not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1, got {per_image}")
    unknown = [k for k in kinds if k not in DEFECT_KINDS]
    if unknown or len(kinds) == 0:
        raise ValueError(f"kinds must be a non-empty subset of {DEFECT_KINDS}, got {kinds!r}")
    defects = []
    for i, image in enumerate(images):
        donor = images[(i + 1) % len(images)] if len(images) > 1 else None
        for j in range(per_image):
            n = i * per_image + j
            defects.append(make_defect(image, np.random.default_rng([seed, n]),
                                       kinds[n % len(kinds)], model_side=model_side, donor=donor))
    return defects


def _pixels(image: np.ndarray, name: str) -> np.ndarray:
    """``image`` viewed as (H, W, C), or a ValueError saying what is wrong with it."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(f"{name} must be grey (H, W) or BGR (H, W, 3), got shape {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"{name} is {image.shape[1]}x{image.shape[0]}; "
                         f"both sides must be >= {MIN_SIDE}")
    return image.reshape(*image.shape[:2], -1)


def _donor(donor: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``donor`` with the size and channels of ``image``, as (H, W, C)."""
    pixels = _pixels(donor, "donor")
    h, w = image.shape[:2]
    if pixels.shape[:2] != (h, w):
        pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if pixels.shape[2] != channels:
        pixels = pixels.mean(2, keepdims=True) if channels == 1 else pixels.repeat(3, axis=2)
    return pixels


def _outline(kind: str, rng: np.random.Generator, side: int,
             scale: np.ndarray) -> tuple[np.ndarray, float]:
    """The defect's closed outline in model pixels, centred on 0, and its edge softness."""
    tiny = 1.0 / scale.min()  # one native pixel, in model pixels: nothing may be thinner
    if kind == "scratch":
        length = rng.uniform(*SCRATCH_LENGTH) * side
        width = max(rng.uniform(*SCRATCH_WIDTH), 1.5 * tiny)
        t = np.linspace(0, 1, 32)[:, None]
        bend = rng.uniform(-0.25, 0.25) * length  # a quadratic Bezier: straight to curved
        ends, ctrl = np.array([[-length / 2, 0], [length / 2, 0]]), np.array([0, bend])
        points = (1 - t) ** 2 * ends[0] + 2 * t * (1 - t) * ctrl + t**2 * ends[1]
        tangent = np.gradient(points, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / np.hypot(*tangent.T)[:, None]
        half = width / 2 * (0.4 + 0.6 * np.sin(np.pi * t) ** 0.5)  # tapered ends
        shape, soft = np.concatenate([points + normal * half, (points - normal * half)[::-1]]), 0.0
    else:
        size = rng.uniform(*BLOB_SIZE) if kind == "blob" else rng.uniform(*REGION_SIZE) * side
        size = max(size, 3 * tiny)
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radius = np.ones_like(theta)
        for k, most in ((2, 0.2), (3, 0.15), (4, 0.08)):  # an irregular, potato-like edge
            radius += rng.uniform(0, most) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        shape = np.stack([np.cos(theta), rng.uniform(0.5, 1) * np.sin(theta)], 1) * radius[:, None]
        shape *= size / 2 / np.abs(shape).max()
        soft = {"blob": 0.12 * size, "shift": 0.1 * size}.get(kind, rng.uniform(0.7, 2.0))
    angle = rng.uniform(0, np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return shape @ rotation.T, soft


def _rasterise(outline: np.ndarray, sigma: np.ndarray,
               hw: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    """The region of interest and the blend weight in it of a native-pixel outline."""
    pad = int(np.ceil(3 * sigma.max())) + 2
    x0, y0 = np.maximum(np.floor(outline.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(outline.max(0)).astype(int) + pad, [hw[1], hw[0]])
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(canvas, [np.rint((outline - [x0, y0]) * 16).astype(np.int32)], 255,
                 cv2.LINE_AA, shift=4)
    alpha = canvas.astype(np.float32) / 255
    if sigma.max() > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), float(sigma[0]), sigmaY=float(sigma[1]))
    # A sharp outline keeps the pixels it half covers, so a thin scratch is as wide in the mask
    # at every frame size; a soft one keeps its ramp down to _CUT, which barely shows.
    alpha[alpha < (_CUT if sigma.max() > 0 else 0.5)] = 0
    if not alpha.any():  # cannot happen above a native pixel; keep the promise regardless
        alpha[canvas.shape[0] // 2, canvas.shape[1] // 2] = 1
    return (slice(y0, y1), slice(x0, x1)), alpha


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: np.ndarray) -> np.ndarray:
    """Perlin-like fractal noise in [0, 1]: three octaves of smoothly upsampled random grids."""
    out = np.zeros(shape, np.float32)
    for octave in range(3):
        gy, gx = np.maximum(2, np.rint(cells * 2**octave)).astype(int) + 1
        grid = rng.random((gy, gx), np.float32)
        out += 0.5**octave * cv2.resize(grid, shape[::-1], interpolation=cv2.INTER_CUBIC)
    return (out - out.min()) / max(float(np.ptp(out)), 1e-6)


def _target(kind: str, rng: np.random.Generator, base: np.ndarray, alpha: np.ndarray,
            source: np.ndarray, roi: tuple[slice, slice], scale: np.ndarray,
            same_image: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the defect's pixels become at full weight, and the (possibly lowered) weight."""
    h, w, channels = base.shape
    hue = min(float(np.ptp(base, axis=2).mean()), 12.0)  # grey stays grey: colour only in colour
    model_hw = np.array([h / scale[1], w / scale[0]])  # the region's size in model pixels
    if kind == "patch":  # CutPaste: a piece of another good surface, flipped and jittered
        ys, xs = roi
        for _ in range(20):  # from the same image: somewhere that does not overlap
            y = rng.integers(0, source.shape[0] - h + 1)
            x = rng.integers(0, source.shape[1] - w + 1)
            if not same_image or abs(y - ys.start) >= h or abs(x - xs.start) >= w:
                break
        patch = source[y:y + h, x:x + w][:: rng.choice([-1, 1]), :: rng.choice([-1, 1])]
        patch = patch.astype(np.float32)
        mean = patch.mean((0, 1))
        jitter = rng.choice([-1, 1]) * rng.uniform(10, 40)  # the same texture alone may not show
        return (patch - mean) * rng.uniform(0.75, 1.3) + mean + jitter, alpha
    if kind == "texture":  # DRAEM: a generated texture blended in, partly transparent
        n = _noise(rng, (h, w), model_hw / rng.uniform(3, 10))
        if rng.random() < 0.5:  # oriented, wavy stripes: a foreign machining pattern
            v, u = np.mgrid[0:h, 0:w] / scale[::-1, None, None]
            angle, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
            phase = (u * np.cos(angle) + v * np.sin(angle)) * 2 * np.pi / period + 4 * n
            n = 0.5 + 0.5 * np.sin(phase).astype(np.float32)
        level = base[alpha > 0].mean() + rng.choice([-1, 1]) * rng.uniform(20, 90)
        level, amplitude = np.clip(level, 20, 235), rng.uniform(20, 70)
        tint = 1 + rng.uniform(-hue, hue, channels) / 80
        opacity = np.where(alpha > 0, np.maximum(alpha * rng.uniform(0.5, 1), _CUT), 0)
        return (level + amplitude * (2 * n[..., None] - 1)) * tint, opacity
    if kind == "shift":  # a stain or discolouration: gain and offset, per channel in colour
        mean = base[alpha > 0].mean(0)
        offset = rng.choice([-1, 1]) * rng.uniform(25, 60) + rng.uniform(-hue, hue, channels)
        return mean + (base - mean) * rng.uniform(0.7, 1.3) + offset, alpha
    darker = rng.random() < 0.5  # scratch or blob: towards black or white
    strength = rng.uniform(0.4, 0.85)
    toward = base * (1 - strength) if darker else base + (255 - base) * strength
    if kind == "blob" and rng.random() < 0.5:  # a dent: lit on one side, shaded on the other
        v, u = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
        angle = rng.uniform(0, 2 * np.pi)
        side = (u * np.cos(angle) + v * np.sin(angle)).astype(np.float32)[..., None]
        toward = base + rng.uniform(40, 90) * side - 20
    return toward, alpha
