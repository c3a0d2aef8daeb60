"""load_image: every source kind and image mode becomes RGB uint8; bad files raise ImageError by name."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from yolos.errors import ImageError
from yolos.images import load_image


def _rgb_array(h=24, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_paths_str_and_pathlib(tmp_path):
    arr = _rgb_array()
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    for src in (path, str(path)):
        im = load_image(src)
        assert im.mode == "RGB" and im.size == (40, 24)
        np.testing.assert_array_equal(np.asarray(im), arr)


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P", "1", "CMYK"])
def test_pil_modes_convert_like_pillow(tmp_path, mode):
    base = Image.fromarray(_rgb_array())
    im = base.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"img{suffix}"
    im.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == base.size
    with Image.open(path) as ref:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(ref.convert("RGB")))
    if mode == "L":
        a = np.asarray(out)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    # 16-bit grey: 65535 is white, 32896 = 128 * 257 is mid grey; convert("RGB") would clip to 255.
    values = np.array([0, 257, 32896, 65535], dtype=np.uint16)
    arr = np.tile(values.repeat(8), (16, 1))  # 16 x 32
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # Pillow keeps the 16 bits
    out = np.asarray(load_image(path))
    np.testing.assert_array_equal(out[0, ::8, 0], [0, 1, 128, 255])
    # A 32-bit "I" image holding 16-bit values, as older Pillow opens such PNGs.
    out_i = np.asarray(load_image(Image.fromarray(arr.astype(np.int32))))
    np.testing.assert_array_equal(out_i[0, ::8, 1], [0, 1, 128, 255])
    np.testing.assert_array_equal(np.asarray(load_image(arr))[0, ::8, 2], [0, 1, 128, 255])


def test_exif_orientation_applied(tmp_path):
    # Stored 40 wide x 20 high: left half red, right half blue. Orientation 6 means "rotate
    # 90 degrees clockwise to display", so the viewer sees 20 wide x 40 high, red on top.
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20, 0] = 255
    arr[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=95)
    im = load_image(path)
    assert im.size == (20, 40)
    a = np.asarray(im).astype(int)
    assert a[5, 10, 0] > 200 and a[5, 10, 2] < 60  # top: red
    assert a[35, 10, 2] > 200 and a[35, 10, 0] < 60  # bottom: blue
    with Image.open(path) as opened:  # an opened PIL image is treated the same way
        assert load_image(opened).size == (20, 40)


def test_truncated_jpeg_raises_naming_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb_array(64, 64)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(path)


def test_text_file_and_missing_file_raise(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="notes.jpg"):
        load_image(path)
    with pytest.raises(ImageError, match="nowhere.png"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageError):
        load_image(12345)


def test_too_small_raises(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(_rgb_array(10, 10)).save(path)
    with pytest.raises(ImageError, match="tiny.png.*too small"):
        load_image(path)
    with pytest.raises(ImageError, match="too small"):
        load_image(np.zeros((15, 100, 3), dtype=np.uint8))
    assert load_image(np.zeros((16, 16, 3), dtype=np.uint8)).size == (16, 16)


def test_numpy_arrays():
    arr = _rgb_array()
    np.testing.assert_array_equal(np.asarray(load_image(arr)), arr)
    rgba = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), arr)
    gray = arr[..., 0]
    out = np.asarray(load_image(gray))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    np.testing.assert_array_equal(np.asarray(load_image(gray[..., None])), out)
    # Floats are read as [0, 1] and rounded to the nearest uint8 level.
    np.testing.assert_array_equal(np.asarray(load_image(arr.astype(np.float64) / 255.0)), arr)
    bad = arr.astype(np.float32) / 255
    bad[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        load_image(bad)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((20, 20, 5), np.uint8))
    with pytest.raises(ImageError, match="outside 0..255"):
        load_image(np.full((20, 20), 300, dtype=np.int32))


def test_torch_tensors_are_chw():
    arr = _rgb_array()
    chw = torch.from_numpy(arr).permute(2, 0, 1)
    np.testing.assert_array_equal(np.asarray(load_image(chw)), arr)
    np.testing.assert_array_equal(np.asarray(load_image(chw.float() / 255)), arr)
    np.testing.assert_array_equal(np.asarray(load_image(chw[:1]))[..., 2], arr[..., 0])
    with pytest.raises(ImageError, match="C, H, W"):
        load_image(torch.zeros(24, 40, 3))  # HWC tensors are ambiguous: refused
