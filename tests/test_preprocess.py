"""preprocess vs transformers' PIL YOLOS image processor on real COCO images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_data
from PIL import Image

from yolos.inference.preprocess import preprocess

pil_yolos = pytest.importorskip("transformers.models.yolos.image_processing_pil_yolos")


def _reference(images, short_side, long_side):
    processor = pil_yolos.YolosImageProcessorPil(
        size={"shortest_edge": short_side, "longest_edge": long_side}
    )
    # The reference refuses single-channel arrays, so it gets RGB images.
    rgb = [Image.open(p).convert("RGB") for p in images]
    return processor(images=rgb, return_tensors="pt")["pixel_values"]


def _val_images(coco_val80, n=9):
    files = sorted((coco_val80 / "val2017").glob("*.jpg"))[:n]
    gray = shared_data("coco128", "train2017", "000000000086.jpg")  # mode L
    return files + [gray]


def test_cats_matches_published_values(cats_png):
    out = preprocess(cats_png)
    ref = json.loads((cats_png.parent / "reference_outputs.json").read_text())
    expected = ref["yolos_small_image_processor_test"]
    assert list(out["pixel_values"].shape) == expected["pixel_values_shape"]
    assert out["pixel_values"].dtype == torch.float32
    torch.testing.assert_close(
        out["pixel_values"][0, 0, 0, :3], torch.tensor(expected["pixel_values[0,0,0,:3]"]),
        atol=1e-4, rtol=0,
    )
    assert out["original_sizes"] == [(480, 640)]
    assert out["resized_sizes"] == [(800, 1056)]
    assert list(preprocess(cats_png, short_side=512)["pixel_values"].shape) == [1, 3, 512, 672]


@pytest.mark.parametrize("short_side", [800, 512])
def test_single_images_match_transformers(coco_val80, short_side):
    for path in _val_images(coco_val80):
        ours = preprocess(path, short_side=short_side, long_side=1333)
        ref = _reference([path], short_side, 1333)
        assert ours["pixel_values"].shape == ref.shape, path.name
        torch.testing.assert_close(ours["pixel_values"], ref, atol=1e-4, rtol=0, msg=path.name)
        with Image.open(path) as im:
            assert ours["original_sizes"] == [(im.height, im.width)]
        assert ours["resized_sizes"] == [tuple(ref.shape[-2:])]


def test_batched_padding_matches_transformers(coco_val80):
    paths = _val_images(coco_val80, n=5)
    ours = preprocess(paths, short_side=512, long_side=1333)
    ref = _reference(paths, 512, 1333)
    assert ours["pixel_values"].shape == ref.shape
    assert len(set(ours["resized_sizes"])) > 1  # the batch really mixes sizes
    torch.testing.assert_close(ours["pixel_values"], ref, atol=1e-4, rtol=0)
    for i, (h, w) in enumerate(ours["resized_sizes"]):
        assert (ours["pixel_values"][i, :, h:, :] == 0).all()
        assert (ours["pixel_values"][i, :, :, w:] == 0).all()


def test_orig_rule_and_inputs_in_memory():
    # 640x360: hustvl/YOLOS Ti eval (512, max 853) gives 480x848.
    arr = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    out = preprocess([arr, Image.fromarray(arr)], short_side=512, long_side=853, rule="orig")
    assert out["resized_sizes"] == [(480, 848), (480, 848)]
    torch.testing.assert_close(out["pixel_values"][0], out["pixel_values"][1], atol=0, rtol=0)
    # Normalization by hand at one pixel of an image that needs no resize.
    arr = np.random.default_rng(2).integers(0, 256, (800, 1056, 3), dtype=np.uint8)
    pv = preprocess(arr)["pixel_values"][0]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(pv[:, 7, 9].numpy(), (arr[7, 9] / 255 - mean) / std, atol=1e-5)


def test_extreme_aspect_ratio_is_stretched_to_one_patch():
    # 16 x 6000 at short side 800, cap 1333: 1333 wide leaves 3.6 rows, floored to 0 by the
    # multiple-of-16 rule; the image is stretched to one patch instead of failing
    pv = preprocess(np.zeros((16, 6000, 3), dtype=np.uint8))["pixel_values"]
    assert tuple(pv.shape[-2:]) == (16, 1328)
