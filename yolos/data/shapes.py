"""Drawing seeded shapes with exact boxes: what :mod:`yolos.data.synthetic` renders.

:func:`render_shapes` draws one image from a :class:`ShapesSpec`. Two looks:

* ``"classic"``: mid-tone noise, gradient or stripe backgrounds; fills from the 8 corners of the
  RGB cube far from the background; upright triangles. The look the project's first models and
  studies used; the same seed gives the same image as it always did.
* ``"varied"``: every background kind, plain ones included, of any colour from black to white;
  any fill colour (saturated, pale, dark or grey) with enough contrast to the background under
  it; triangles and stars in any of four orientations; sensor noise on half the images. A model
  trained on it detects shapes drawn the simple way (one colour on one colour), which classic
  images never show.

``outline`` draws that share of the shapes as outlines (2-4 px strokes) instead of filled.
Kinds: square, circle, triangle (the classic three), star, cross, ring.

Every box is the tight box of the shape's drawn pixels (``[x, y, w, h]`` with integer pixel
edges) and ``area`` their count; shapes never overlap (one free pixel between neighbours).
Side lengths are drawn log-uniformly from ``[min_size, max_size]``.
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw

CLASSIC_SHAPES = ("square", "circle", "triangle")
SHAPES = CLASSIC_SHAPES + ("star", "cross", "ring")
LOOKS = ("classic", "varied")
# Upper bounds of what a spec (a dataset YAML, the command line) may ask for: a larger image or
# object count is refused before anything is allocated.
MAX_IMAGE_SIZE = 2048
MAX_OBJECTS = 100


@dataclass(frozen=True)
class ShapesSpec:
    """What one image holds. ``min_size``/``max_size`` (side length in pixels) default to
    ``image_size // 7`` to ``0.45 * image_size``; ``look`` and ``outline`` as in the module doc."""

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 3
    shapes: tuple[str, ...] = CLASSIC_SHAPES
    min_size: int | None = None
    max_size: int | None = None
    look: str = "classic"
    outline: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "shapes", tuple(self.shapes))
        if not self.shapes or any(s not in SHAPES for s in self.shapes) or len(set(self.shapes)) < len(self.shapes):
            raise ValueError(f"shapes must be distinct names from {SHAPES}, got {self.shapes}")
        if not 32 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be 32..{MAX_IMAGE_SIZE}, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}")
        lo, hi = self.size_range
        if not 3 <= lo <= hi <= self.image_size:
            raise ValueError(f"need 3 <= min_size <= max_size <= image_size, got {lo}..{hi}")
        if self.look not in LOOKS:
            raise ValueError(f"look must be one of {LOOKS}, got {self.look!r}")
        if isinstance(self.outline, bool) or not 0.0 <= float(self.outline) <= 1.0:
            raise ValueError(f"outline must be a share between 0 and 1, got {self.outline!r}")

    @property
    def size_range(self) -> tuple[int, int]:
        lo = self.min_size if self.min_size is not None else max(8, self.image_size // 7)
        hi = self.max_size if self.max_size is not None else max(lo, int(self.image_size * 0.45) - 1)
        return int(lo), int(hi)

    def categories(self) -> list[dict]:
        return [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(self.shapes)]


# ----------------------------------------------------------------------------- backgrounds
def _texture(rng, size: int, kind: int, base: np.ndarray, amplitude: float, other_range) -> np.ndarray:
    """Noise (0), a linear gradient from ``base`` to a colour drawn from ``other_range`` (1) or
    stripes (2) around ``base``; float32 ``[size, size, 3]``, not clipped."""
    ramp = np.arange(size, dtype=np.float32) / size
    if kind == 0:
        noise = rng.standard_normal((size, size, 3), dtype=np.float32)
        noise *= amplitude
        return _plus_colour(noise, base)
    angle = rng.uniform(0, 2 * np.pi if kind == 1 else np.pi)
    # (cos a) x + (sin a) y over the grid, by broadcasting a row against a column
    t = np.float32(np.cos(angle)) * ramp[None, :] + np.float32(np.sin(angle)) * ramp[:, None]
    if kind == 1:
        other = rng.uniform(*other_range, size=3).astype(np.float32)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
        return _plus_colour(_times_colour(t, other - base), base)
    period = rng.uniform(0.05, 0.25)
    wave = amplitude * np.sin(np.float32(2 * np.pi / period) * t)
    return _plus_colour(_times_colour(wave, rng.uniform(0.5, 1.0, size=3).astype(np.float32)), base)


# Why these two: numpy runs an elementwise op against a colour (shape [3]) in loops of 3 along
# the last axis, ~10x slower than the same float32 products and sums over whole rows; a
# background spent most of its time there. Each element gets the same single operation as
# before, so a seed keeps its image.
def _times_colour(plane: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """float32 ``[H, W, 3]``: ``plane[..., None] * colour`` (``plane`` ``[H, W]``)."""
    out = np.empty((*plane.shape, 3), dtype=np.float32)
    for c in range(3):
        np.multiply(plane, colour[c], out=out[..., c])
    return out


def _plus_colour(canvas: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``canvas + colour`` in place (float32 ``[H, W, 3]``, C-contiguous), by rows of ``W * 3``."""
    h, w, _ = canvas.shape
    rows = canvas.reshape(h, w * 3)
    rows += np.tile(colour.astype(np.float32), w)
    return canvas


def _mean_colour(canvas: np.ndarray) -> np.ndarray:
    """``canvas.reshape(-1, 3).mean(0)`` to the bit: float32 sums in pixel order, which is how
    numpy sums over that non-contiguous axis, but along contiguous channel rows (faster). One
    copy, also of a strided region of the canvas."""
    channels = np.ascontiguousarray(canvas.transpose(2, 0, 1)).reshape(3, -1)
    return np.add.accumulate(channels, axis=1)[:, -1] / channels.shape[1]


def _classic_background(rng, size: int) -> np.ndarray:
    """Mid-tone noise, gradient or stripes (float32 [size, size, 3] in 0..255)."""
    base = rng.uniform(70, 150, size=3).astype(np.float32)
    kind = int(rng.integers(3))
    canvas = _texture(rng, size, kind, base, 18 if kind == 0 else 25, (70, 150))
    return np.clip(canvas, 0, 255, out=canvas)


_VARIED_BACKGROUNDS = ("plain", "plain", "checker", "noise", "gradient", "stripes")


def _varied_background(rng, size: int) -> np.ndarray:
    """Plain (a third), checkerboard, noise, gradient or stripes, of any colour."""
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    kind = _VARIED_BACKGROUNDS[rng.integers(0, len(_VARIED_BACKGROUNDS))]  # as rng.choice(the list) draws
    if kind == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy()
    if kind == "checker":  # two close tones in squares of 4-16 px
        cell = int(rng.integers(4, 17))
        yy, xx = np.indices((size, size)) // cell
        other = np.clip(base + rng.uniform(-40, 40, size=3), 0, 255).astype(np.float32)
        return np.where(((yy + xx) % 2 == 0)[..., None], base, other).astype(np.float32)
    index = {"noise": 0, "gradient": 1, "stripes": 2}[kind]
    canvas = _texture(rng, size, index, base, rng.uniform(8, 30), (0, 255))
    return np.clip(canvas, 0, 255, out=canvas)


# ----------------------------------------------------------------------------- colours
_CUBE_ENDS = np.array([0.0, 255.0])


def _cumulative_shares(shares) -> list[float]:
    """The bounds ``Generator.choice(len(shares), p=shares)`` compares its uniform draw with."""
    cdf = np.cumsum(np.asarray(shares, dtype=np.float64))
    cdf /= cdf[-1]
    return cdf.tolist()


_COLOUR_KINDS_CDF = _cumulative_shares([0.4, 0.3, 0.15, 0.15])  # saturated, pale, dark, grey


def _classic_colour(rng, background_mean: np.ndarray) -> np.ndarray:
    """A saturated colour (a corner of the RGB cube: 8 hues incl. black and white) far
    (L1 > 200) from the background's mean colour."""
    while True:  # integers(0, 2) draws as choice([0.0, 255.0]) did, at half its cost
        c = _CUBE_ENDS[rng.integers(0, 2, size=3)] * rng.uniform(0.85, 1.0, size=3)
        if np.abs(c - background_mean).sum() > 200:
            return c


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255


def _varied_colour(rng, under: np.ndarray, min_contrast: float = 90.0) -> np.ndarray:
    """A saturated, pale, dark or grey colour whose L1 distance to the mean colour ``under`` the
    shape is at least ``min_contrast`` (the most distinct of 24 draws when none is)."""
    best, best_distance = None, -1.0
    for _ in range(24):
        kind = bisect.bisect_right(_COLOUR_KINDS_CDF, rng.random())  # rng.choice(4, p=...)'s draw
        h = rng.uniform()
        if kind == 0:
            c = _hsv(h, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))  # saturated
        elif kind == 1:
            c = _hsv(h, rng.uniform(0.1, 0.45), rng.uniform(0.85, 1.0))  # pale
        elif kind == 2:
            c = _hsv(h, rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.35))  # dark
        else:
            c = np.full(3, rng.uniform(0, 255), dtype=np.float32)  # grey, white or black
        distance = float(np.abs(c - under).sum())
        if distance >= min_contrast:
            return c
        if distance > best_distance:
            best, best_distance = c, distance
    return best


# ----------------------------------------------------------------------------- masks
def _star_points(s: int, points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    r_out = (s - 1) / 2
    cx = cy = (s - 1) / 2
    out = []
    for k in range(2 * points):
        r = r_out if k % 2 == 0 else r_out * inner
        a = -math.pi / 2 + k * math.pi / points
        out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return out


def shape_mask(shape: str, s: int, rng) -> np.ndarray:
    """Boolean ``[s, s]`` mask of a filled shape spanning its square (a star spans its width
    and most of its height); read-only (masks up to 128 px are kept and shared)."""
    param = 0
    if shape == "triangle":  # apex anywhere on the top edge
        param = int(rng.integers(0, s))
    elif shape == "ring":  # the ring's width
        param = max(1, round(s * rng.uniform(0.25, 0.35)))
    return (_kept_mask if s <= 128 else _draw_mask)(shape, s, param)


@functools.lru_cache(maxsize=4096)  # at most 64 MiB of masks
def _kept_mask(shape: str, s: int, param: int) -> np.ndarray:
    return _draw_mask(shape, s, param)


def _draw_mask(shape: str, s: int, param: int) -> np.ndarray:
    """``param``: the triangle's apex column, the ring's width; unused otherwise."""
    mask = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "square":
        draw.rectangle((0, 0, s - 1, s - 1), fill=255)
    elif shape == "circle":
        draw.ellipse((0, 0, s - 1, s - 1), fill=255)
    elif shape == "triangle":
        draw.polygon([(param, 0), (0, s - 1), (s - 1, s - 1)], fill=255)
    elif shape == "star":
        draw.polygon(_star_points(s), fill=255)
    elif shape == "cross":  # a plus sign with arms a third of the side wide
        arm = max(1, round(s / 3))
        lo = (s - arm) // 2
        draw.rectangle((lo, 0, lo + arm - 1, s - 1), fill=255)
        draw.rectangle((0, lo, s - 1, lo + arm - 1), fill=255)
    elif shape == "ring":
        draw.ellipse((0, 0, s - 1, s - 1), fill=255)
        draw.ellipse((param, param, s - 1 - param, s - 1 - param), fill=0)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask = np.asarray(mask) > 0
    mask.flags.writeable = False
    return mask


def outline_of(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels of its edge (the shape drawn as a stroke;
    its extent, so its box, is the filled shape's)."""
    # Erosion by a (2w+1)-square, outside the mask counting as empty: a min over rows, then
    # over columns (separable; the same pixels as PIL's MinFilter, 7x faster at 64 px).
    window = 2 * width + 1
    padded = np.pad(mask, width)
    rows = sliding_window_view(padded, window, axis=1).all(-1)
    inner = sliding_window_view(rows, window, axis=0).all(-1)
    return mask & ~inner


# ----------------------------------------------------------------------------- images
def render_shapes(rng: np.random.Generator, spec: ShapesSpec) -> tuple[np.ndarray, list[dict]]:
    """One image: ``(uint8 [H, W, 3], [{"bbox": [x, y, w, h], "category_id", "area"}, ...])``.

    Places ``min_objects..max_objects`` shapes by rejection sampling (20 tries each; a shape
    that finds no free spot is skipped, so crowded images may hold fewer)."""
    size = spec.image_size
    lo, hi = spec.size_range
    varied = spec.look == "varied"
    canvas = _varied_background(rng, size) if varied else _classic_background(rng, size)
    bg_mean = None if varied else _mean_colour(canvas)  # the classic colours' reference
    occupied = np.zeros((size, size), dtype=bool)
    objects = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _attempt in range(20):
            s = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi + 0.5)))))
            s = min(max(s, lo), hi)
            x0 = int(rng.integers(0, size - s + 1))
            y0 = int(rng.integers(0, size - s + 1))
            # one pixel of margin keeps the boxes of neighbours from touching
            if not occupied[max(0, y0 - 1): y0 + s + 1, max(0, x0 - 1): x0 + s + 1].any():
                break
        else:
            continue
        shape_index = int(rng.integers(len(spec.shapes)))
        shape = spec.shapes[shape_index]
        mask = shape_mask(shape, s, rng)
        region = canvas[y0: y0 + s, x0: x0 + s]
        if varied:
            if shape in ("triangle", "star"):
                mask = np.rot90(mask, int(rng.integers(4)))
            colour = _varied_colour(rng, _mean_colour(region))
        else:
            colour = _classic_colour(rng, bg_mean)
        if spec.outline and rng.uniform() < spec.outline:
            mask = outline_of(mask, max(2, min(4, round(s / 12))))
        occupied[y0: y0 + s, x0: x0 + s] = True
        ys, xs = np.nonzero(mask)
        region[ys, xs] = colour
        bx, by = x0 + int(xs.min()), y0 + int(ys.min())
        bw, bh = x0 + int(xs.max()) + 1 - bx, y0 + int(ys.max()) + 1 - by
        objects.append({"bbox": [bx, by, bw, bh], "category_id": shape_index + 1, "area": len(ys)})
    if varied and rng.uniform() < 0.5:  # sensor noise over everything
        scale = rng.uniform(2, 8)
        noise = rng.standard_normal(canvas.shape, dtype=np.float32)
        noise *= scale  # in place: the same float32 products as scale * noise, without temporaries
        canvas += noise
    np.clip(canvas, 0, 255, out=canvas)
    return np.rint(canvas, out=canvas).astype(np.uint8), objects


__all__ = ["ShapesSpec", "render_shapes", "shape_mask", "outline_of", "SHAPES", "CLASSIC_SHAPES", "LOOKS",
           "MAX_IMAGE_SIZE", "MAX_OBJECTS"]
