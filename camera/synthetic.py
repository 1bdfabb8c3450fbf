"""Synthetic machined parts with known defects: a labeled camera for demos, tests and samples.

Each part is a turned metal flange on a dark fixture: concentric turning marks,
a chamfered rim, a central bore with a keyway and six bolt holes, seen under
slightly varying pose and light with mild sensor noise. A defective part adds
one of ``DEFECT_TYPES`` and returns its exact pixel mask. Rendering is
deterministic: ``(seed, index)`` always gives the same bytes, whatever order
parts are rendered in, and forcing a defect keeps the pose of the good part.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np

DEFECT_TYPES: tuple[str, ...] = ("scratch", "dent", "spot", "crack", "missing_feature")
HOLES = 6
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 9]


class _Random:
    def __repr__(self) -> str:
        return "RANDOM"


RANDOM: Final = _Random()  # render(): draw the defect (or none) from defect_rate


@dataclass(frozen=True)
class SyntheticPart:
    """One rendered part and its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    mask: np.ndarray  # (H, W) uint8, 255 on defect pixels; all zero for a good part
    defect: str | None  # defect type, None for a good part
    index: int


@dataclass(frozen=True)
class _Pose:
    cx: float
    cy: float
    radius: float
    angle: float  # radians
    gain: float
    gradient: tuple[float, float]  # light fall-off across the part, per pixel in x and y
    highlight_angle: float
    turning_phase: float


class PartGenerator:
    """Renders part ``index`` of a deterministic, endless production run."""

    def __init__(
        self,
        seed: int = 0,
        width: int = 256,
        height: int = 256,
        defect_rate: float = 0.0,
        defect_types: tuple[str, ...] | list[str] = DEFECT_TYPES,
    ) -> None:
        if width < 64 or height < 64:
            raise ValueError(f"width and height must be >= 64, got {width}x{height}")
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
        unknown = [name for name in defect_types if name not in DEFECT_TYPES]
        if unknown or not defect_types:
            raise ValueError(
                f"defect_types must be a non-empty subset of {DEFECT_TYPES}, got {defect_types}"
            )
        self.seed, self.width, self.height = seed, width, height
        self.defect_rate = defect_rate
        self.defect_types = tuple(defect_types)
        # Pixel grids relative to the image centre, shared by every render.
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self._xs, self._ys = xs - width / 2, ys - height / 2

    def render(self, index: int, defect: str | _Random | None = RANDOM) -> SyntheticPart:
        """Part ``index``; ``defect`` None forces a good part, a type name forces that defect."""
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        pose_seq, choice_seq, defect_seq, noise_seq = np.random.SeedSequence(
            [self.seed, index]
        ).spawn(4)
        if isinstance(defect, _Random):
            choice = np.random.default_rng(choice_seq)
            defect = (
                str(choice.choice(self.defect_types))
                if choice.random() < self.defect_rate
                else None
            )
        elif defect is not None and defect not in DEFECT_TYPES:
            raise ValueError(
                f"defect must be None, RANDOM or one of {DEFECT_TYPES}, got {defect!r}"
            )
        pose = self._pose(np.random.default_rng(pose_seq))
        defect_rng = np.random.default_rng(defect_seq)
        mask = np.zeros((self.height, self.width), np.uint8)
        missing = int(defect_rng.integers(HOLES)) if defect == "missing_feature" else None
        grey, metal = self._surface(pose, missing)
        colour = self._light(grey, metal, pose)
        if defect is not None:
            self._draw_defect(defect, colour, mask, metal > 0.5, pose, defect_rng, missing)
        noise = np.random.default_rng(noise_seq).normal(0, 1.2, colour.shape[:2]).astype(np.float32)
        image = np.clip(colour + noise[..., None], 0, 255).astype(np.uint8)
        return SyntheticPart(image, mask, defect, index)

    # --- geometry and light ----------------------------------------------------------

    def _pose(self, rng: np.random.Generator) -> _Pose:
        size = min(self.width, self.height)
        shift = 0.012 * size
        return _Pose(
            cx=float(rng.uniform(-shift, shift)),
            cy=float(rng.uniform(-shift, shift)),
            radius=0.42 * size * float(rng.uniform(0.99, 1.01)),
            angle=float(rng.uniform(-0.06, 0.06)),
            gain=float(rng.uniform(0.92, 1.08)),
            gradient=(
                float(rng.uniform(-0.12, 0.12)) / size,
                float(rng.uniform(-0.12, 0.12)) / size,
            ),
            highlight_angle=float(rng.uniform(-0.25, 0.25)),
            turning_phase=float(rng.uniform(0, 2 * math.pi)),
        )

    def _hole_centres(self, pose: _Pose) -> list[tuple[float, float]]:
        ring = 0.68 * pose.radius
        return [
            (
                pose.cx + ring * math.cos(pose.angle + k * 2 * math.pi / HOLES),
                pose.cy + ring * math.sin(pose.angle + k * 2 * math.pi / HOLES),
            )
            for k in range(HOLES)
        ]

    def _surface(self, pose: _Pose, missing_hole: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Grey level of the unlit scene and the metal coverage (0..1, anti-aliased)."""
        dx, dy = self._xs - pose.cx, self._ys - pose.cy
        r = np.sqrt(dx * dx + dy * dy)
        R = pose.radius
        aa = max(1.0, R / 120)  # edge softness in pixels
        period = max(2.0, R / 40)  # turning-mark spacing
        turning = 6.0 * np.sin(r * (2 * math.pi / period) + pose.turning_phase)
        grey = 150.0 + turning + 10.0 * (r / R)
        # chamfered rim: a brighter bevel band at the outer edge
        grey += 35.0 * _band(r, 0.94 * R, R, aa)
        # bore and its bright inner edge; a keyway notch cut into the bore
        bore = 0.2 * R
        ux, uy = math.cos(pose.angle), math.sin(pose.angle)
        along, across = dx * ux + dy * uy, -dx * uy + dy * ux
        keyway = (along > 0) & (along < bore + 0.06 * R) & (np.abs(across) < 0.045 * R)
        grey += 40.0 * _band(r, bore, bore + 0.025 * R, aa)
        metal = _inside(r, R, aa) * (1 - _inside(r, bore, aa))
        metal[keyway] = 0.0
        for k, (hx, hy) in enumerate(self._hole_centres(pose)):
            if k == missing_hole:
                continue
            hr = np.sqrt((self._xs - hx) ** 2 + (self._ys - hy) ** 2)
            hole = 0.075 * R
            grey += 30.0 * _band(hr, hole, hole + 0.02 * R, aa)
            metal *= 1 - _inside(hr, hole, aa)
        background = 42.0 + 6.0 * np.sin(self._xs / (0.9 * R) + 1.3) * np.cos(self._ys / (1.1 * R))
        grey = metal * grey + (1 - metal) * background
        return grey.astype(np.float32), metal.astype(np.float32)

    def _light(self, grey: np.ndarray, metal: np.ndarray, pose: _Pose) -> np.ndarray:
        """Gain, a gentle gradient and the bow-tie highlight of turned metal, tinted BGR."""
        theta = np.arctan2(self._ys - pose.cy, self._xs - pose.cx)
        highlight = 1.0 + 0.12 * np.cos(2 * (theta - pose.highlight_angle)) * metal
        gradient = 1.0 + pose.gradient[0] * self._xs + pose.gradient[1] * self._ys
        lit = grey * highlight * gradient * pose.gain
        return lit[..., None] * np.array([1.03, 1.0, 0.96], np.float32)

    # --- defects ----------------------------------------------------------------------

    def _surface_point(self, pose: _Pose, rng: np.random.Generator) -> tuple[float, float]:
        """A random point on the flat face, away from bore, rim and holes."""
        holes = self._hole_centres(pose)
        for _ in range(100):
            r = pose.radius * rng.uniform(0.34, 0.86)
            a = rng.uniform(0, 2 * math.pi)
            x, y = pose.cx + r * math.cos(a), pose.cy + r * math.sin(a)
            if all(math.hypot(x - hx, y - hy) > 0.16 * pose.radius for hx, hy in holes):
                return x + self.width / 2, y + self.height / 2
        return pose.cx + self.width / 2 + 0.5 * pose.radius, pose.cy + self.height / 2

    def _draw_defect(
        self,
        defect: str,
        colour: np.ndarray,
        mask: np.ndarray,
        on_part: np.ndarray,
        pose: _Pose,
        rng: np.random.Generator,
        missing_hole: int | None,
    ) -> None:
        """Draw the defect's mask, keep it on the part, then change the masked pixels."""
        R = pose.radius
        thin = max(2, round(R / 55))
        x, y = self._surface_point(pose, rng)
        if defect == "scratch":
            length, heading = R * rng.uniform(0.3, 0.5), rng.uniform(0, math.pi)
            bend = R * rng.uniform(-0.06, 0.06)
            points = _curve(x, y, length, heading, bend, 24)
            cv2.polylines(mask, [points], False, 255, thin, cv2.LINE_8)
            shade = 1.45 if rng.random() < 0.5 else 0.6
            _apply(colour, mask, on_part, lambda region: region * shade)
        elif defect == "dent":
            axes = (R * rng.uniform(0.06, 0.1), R * rng.uniform(0.035, 0.06))
            tilt = rng.uniform(0, 180)
            cv2.ellipse(mask, _pt(x, y), _pt(*axes), tilt, 0, 360, 255, -1, cv2.LINE_8)
            # a depression: shadowed on the side away from the light, bright on the other
            ramp = ((self._xs + self.width / 2 - x) + (self._ys + self.height / 2 - y)) / max(axes)
            shading = 0.78 + 0.32 * np.clip(ramp, -1, 1)
            _apply(colour, mask, on_part, lambda region, s=shading: region * s[mask > 0][:, None])
        elif defect == "spot":
            n = 11
            angles = np.sort(rng.uniform(0, 2 * math.pi, n))
            radii = R * rng.uniform(0.04, 0.08) * rng.uniform(0.6, 1.3, n)
            polygon = np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], 1)
            cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255, cv2.LINE_8)
            rust = np.array([38, 62, 105], np.float32)
            _apply(colour, mask, on_part, lambda region: 0.3 * region + 0.7 * rust)
        elif defect == "crack":
            points = [(x, y)]
            heading = rng.uniform(0, 2 * math.pi)
            for _ in range(int(rng.integers(7, 11))):
                heading += rng.uniform(-0.7, 0.7)
                step = R * rng.uniform(0.03, 0.06)
                points.append(
                    (
                        points[-1][0] + step * math.cos(heading),
                        points[-1][1] + step * math.sin(heading),
                    )
                )
            line = np.round(np.array(points)).astype(np.int32)
            cv2.polylines(mask, [line], False, 255, thin, cv2.LINE_8)
            if rng.random() < 0.5:  # a short branch from the middle
                bx, by = points[len(points) // 2]
                branch = _curve(bx, by, R * 0.12, heading + rng.uniform(0.8, 1.6), 0.0, 6)
                cv2.polylines(mask, [branch], False, 255, thin, cv2.LINE_8)
            _apply(colour, mask, on_part, lambda region: region * 0.35)
        elif defect == "missing_feature":
            assert missing_hole is not None
            hx, hy = self._hole_centres(pose)[missing_hole]
            hole = 0.095 * R + 2 * max(1.0, R / 120)  # the hole, its bright edge, soft rim
            cv2.circle(mask, _pt(hx + self.width / 2, hy + self.height / 2), round(hole), 255, -1)


def _band(r: np.ndarray, inner: float, outer: float, aa: float) -> np.ndarray:
    """1 between two radii, 0 outside, with soft edges."""
    return np.clip((r - inner) / aa + 0.5, 0, 1) * np.clip((outer - r) / aa + 0.5, 0, 1)


def _inside(r: np.ndarray, radius: float, aa: float) -> np.ndarray:
    return np.clip((radius - r) / aa + 0.5, 0, 1)


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _curve(x: float, y: float, length: float, heading: float, bend: float, n: int) -> np.ndarray:
    """A gently bent line of ``length`` from (x, y): n points of a parabola."""
    t = np.linspace(0, 1, n)
    along, across = t * length, bend * 4 * t * (1 - t)
    px = x + along * math.cos(heading) - across * math.sin(heading)
    py = y + along * math.sin(heading) + across * math.cos(heading)
    return np.round(np.stack([px, py], 1)).astype(np.int32)


def _apply(colour: np.ndarray, mask: np.ndarray, on_part: np.ndarray, change: Callable) -> None:
    """Keep ``mask`` on the part, then replace its pixels of ``colour`` by ``change(pixels)``."""
    mask[~on_part] = 0
    where = mask > 0
    colour[where] = change(colour[where])


def write_dataset(
    out_dir: Path,
    seed: int = 0,
    size: int = 256,
    train_good: int = 30,
    test_good: int = 10,
    per_defect: int = 3,
) -> dict[str, int]:
    """Write an MVTec-AD layout dataset; the same seed writes the same bytes.

    ``train/good``, ``test/good`` and ``test/<defect>`` hold ``NNN.png``;
    ``ground_truth/<defect>/NNN_mask.png`` holds the 0/255 masks. Training and
    test parts come from disjoint index ranges. Returns the count per folder.
    """
    generator = PartGenerator(seed, size, size)
    out_dir = Path(out_dir)
    counts: dict[str, int] = {}
    index = 0

    def save(folder: str, name: str, image: np.ndarray) -> None:
        path = out_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), image, _PNG_PARAMS):
            raise OSError(f"cannot write {path}")

    for folder, count, defect in [
        ("train/good", train_good, None),
        ("test/good", test_good, None),
        *[(f"test/{name}", per_defect, name) for name in DEFECT_TYPES],
    ]:
        for n in range(count):
            part = generator.render(index, defect)
            index += 1
            save(folder, f"{n:03d}.png", part.image)
            if defect is not None:
                save(f"ground_truth/{defect}", f"{n:03d}_mask.png", part.mask)
        counts[folder] = count
    return counts
