"""Turn any supported image source into an RGB ``PIL.Image`` (uint8, EXIF orientation applied).

Accepted sources:
    * ``str`` / ``pathlib.Path``: a file PIL can decode (JPEG, PNG, BMP, TIFF, WebP, ...);
    * ``bytes``: the content of such a file (an upload), checked like a path;
    * ``PIL.Image.Image`` in any common mode (RGB, RGBA, L, LA, P, 1, CMYK, I;16, I, F);
    * ``numpy.ndarray`` ``[H, W]`` or ``[H, W, C]`` (C in 1, 3, 4; RGB order, *not* OpenCV's BGR):
      uint8 as is, uint16 scaled by 1/257, bool as 0/255, floats taken to be in ``[0, 1]``;
    * ``torch.Tensor`` ``[C, H, W]`` or ``[H, W]`` with the same dtype rules (torchvision's layout).

Anything that is not a usable image raises :class:`yolos.errors.ImageError` naming the source.

Pixel limit: images above :func:`max_pixels` (width x height; 40 megapixels by default, about
twice a 24 MP photo) are refused before they are decoded, so a small file that decodes to a huge
image (a decompression bomb) cannot exhaust memory. Change it with :func:`set_max_pixels`, the
``YOLOS_MAX_PIXELS`` environment variable or ``--max-pixels`` on the command line; 0 removes it.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import defaults
from .errors import ImageError
from .validate import non_negative_int

# The pixel statistics every YOLOS/DeiT checkpoint was trained with (RGB, on [0, 1] values).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The decoders an image file is handed to: raster formats only. Pillow would also hand a file to
# EPS (which runs Ghostscript), PSD, FITS and others; an upload or a photo folder needs none.
RASTER_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "AVIF")  # JPEG covers MPO
# File suffixes read as images when a folder is searched (any file named explicitly is tried).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

FLOAT_SLACK = 1e-3  # float images may overshoot 0..1 by rounding this much
MIN_SIDE = 16  # one patch: anything smaller cannot hold a single 16x16 token
DEFAULT_MAX_PIXELS = defaults.MAX_PIXELS


_max_pixels: int | None = None  # set by set_max_pixels; None: $YOLOS_MAX_PIXELS or the default


def max_pixels() -> int:
    """The pixel limit in force: :func:`set_max_pixels`'s, else ``$YOLOS_MAX_PIXELS``, else 40 MP.
    A bad environment value is reported here, when an image is checked, so that ``import yolos``
    and ``--help`` keep working."""
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get("YOLOS_MAX_PIXELS", "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        return non_negative_int(text, "YOLOS_MAX_PIXELS")
    except ValueError as err:
        raise ImageError(f"{err} (environment variable)") from None


def set_max_pixels(limit: int) -> None:
    """Largest image (width x height) that :func:`load_image` accepts; 0 means no limit. PIL's
    own bomb check (which only warns below twice its limit) is left to ours."""
    global _max_pixels
    _max_pixels = non_negative_int(limit, "max_pixels")


def check_pixels(width: int, height: int, name: str) -> None:
    """Raise :class:`ImageError` when ``width x height`` exceeds :func:`max_pixels`."""
    limit = max_pixels()
    if limit and width * height > limit:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} megapixels, above the "
            f"limit of {limit / 1e6:.1f} (raise it with --max-pixels, YOLOS_MAX_PIXELS or "
            f"yolos.set_max_pixels; 0 = no limit)"
        )


ORIENTATION_TAG = 0x0112  # EXIF: how the stored pixels must be turned to be shown upright


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation 1..8 of an opened image (1 when absent or invalid); read from the
    header, nothing is decoded."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError, TypeError, struct_error):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def probe_image(path) -> tuple[int, int, int]:
    """``(width, height, orientation)`` of an image file from its header alone: the size as
    :func:`load_image` returns it (EXIF orientation applied, so 5..8 swap the sides) and the
    orientation. Raises :class:`ImageError` naming the file for a missing or unknown file."""
    path = Path(path)
    _check_regular(path)
    try:
        with Image.open(path, formats=RASTER_FORMATS) as im:
            w, h = im.size
            orientation = exif_orientation(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None
    return (h, w, orientation) if orientation >= 5 else (w, h, orientation)


def describe(source) -> str:
    """A short name for a source, used in error messages."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{len(source)} bytes of image data"
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or ""
        return name or f"PIL image {source.mode} {source.size[0]}x{source.size[1]}"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"{type(source).__name__} of shape {tuple(shape)}"
    return repr(source)[:80]


def _check_regular(path: Path) -> None:
    """An ImageError unless ``path`` is a regular file (a FIFO or device would block or never end)."""
    if not path.is_file():
        raise ImageError(f"{path}: {'not a regular file' if path.exists() else 'no such image file'}")


def _open_path(path: Path) -> Image.Image:
    _check_regular(path)
    return _decode(path, str(path))


def _decode(file, name: str) -> Image.Image:
    """Decode a path or a binary file object, checking the pixel limit from the header first."""
    try:
        with Image.open(file, formats=RASTER_FORMATS) as im:
            check_pixels(im.width, im.height, name)  # from the header, before decoding
            im.load()  # decode now so that truncated files fail here, not later
            return ImageOps.exif_transpose(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (not one of the raster formats "
                         f"{', '.join(RASTER_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, MemoryError) as err:
        raise ImageError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None


def _scale_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """uint8 view of an array by the dtype rules in the module docstring."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        # 65535 / 257 = 255 exactly: the usual 16 -> 8 bit mapping.
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: image contains NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:  # 0..255 floats or normalized values
            raise ImageError(f"{name}: float image values must lie in 0..1, found {lo:g}..{hi:g} "
                             f"(divide 0..255 values by 255, or pass uint8)")
        return (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ImageError(
                f"{name}: integer image of dtype {arr.dtype} has values outside 0..255"
            )
        return arr.astype(np.uint8)
    raise ImageError(f"{name}: unsupported image dtype {arr.dtype}")


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(_scale_to_uint8(arr, name))).convert("RGB")
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ImageError(f"{name}: expected an [H, W] or [H, W, 3|4] image array")
    arr = np.ascontiguousarray(_scale_to_uint8(arr, name)[..., :3])  # alpha dropped, as in convert("RGB")
    return Image.fromarray(arr)


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    """RGB uint8 from any PIL mode; high bit depths are scaled, not clipped as convert() would."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im)
        # "I" holds 16-bit PNGs on some Pillow versions: treat values above 255 as 16-bit.
        if arr.dtype != np.uint16:
            arr = arr.astype(np.int64)
            if arr.size and arr.max() > 255:
                arr = np.clip(arr, 0, 65535).astype(np.uint16)
            else:
                arr = np.clip(arr, 0, 255).astype(np.uint8)
        return _from_array(arr, name)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if arr.size and np.nanmax(arr) > 1.0:
            arr = arr / 255.0
        return _from_array(arr, name)
    try:
        # Like transformers' pipeline, alpha is dropped (not composited) so results match it.
        return im.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageError(f"{name}: cannot convert image mode {im.mode} to RGB ({err})") from None


def load_image(source) -> Image.Image:
    """Load ``source`` (see the module docstring) as an RGB ``PIL.Image``.

    Raises:
        ImageError: the file is missing, not an image, truncated, of an unsupported layout, or
            smaller than one 16x16 patch; the message names the source.
    """
    name = describe(source)
    if isinstance(source, (str, Path)):
        im = _open_path(Path(source))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        im = _decode(io.BytesIO(source), name)
    elif isinstance(source, Image.Image):
        check_pixels(source.width, source.height, name)
        try:
            source.load()
            im = ImageOps.exif_transpose(source)  # copy; the caller's image is left alone
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageError(f"{name}: not a readable image ({err})") from None
    elif isinstance(source, np.ndarray):
        if source.ndim >= 2:
            check_pixels(source.shape[1], source.shape[0], name)
        im = _from_array(source, name)
    elif type(source).__module__.startswith("torch"):
        t = source.detach().cpu()
        if t.ndim == 3:
            if t.shape[0] not in (1, 3, 4):
                raise ImageError(f"{name}: expected a [C, H, W] tensor with C in 1, 3, 4")
            t = t.permute(1, 2, 0)
        elif t.ndim != 2:
            raise ImageError(f"{name}: expected a [C, H, W] or [H, W] tensor")
        check_pixels(t.shape[1], t.shape[0], name)
        if t.dtype.is_floating_point:
            t = t.float()  # numpy has no bfloat16
        im = _from_array(t.numpy(), name)
    else:
        raise ImageError(f"{name}: unsupported image source type {type(source).__name__}")
    im = _to_rgb(im, name)
    if min(im.size) < MIN_SIDE:
        raise ImageError(
            f"{name}: image is {im.size[0]}x{im.size[1]} pixels, too small for one "
            f"{MIN_SIDE}x{MIN_SIDE} patch"
        )
    return im
