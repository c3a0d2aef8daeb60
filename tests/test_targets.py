"""The raw training target every dataset builds (yolos.data.targets.raw_target), by hand."""
from __future__ import annotations

import torch

from yolos.data.targets import raw_target


def test_boxes_become_clipped_corners_and_empty_ones_are_dropped():
    t = raw_target([[10, 5, 20, 10], [-4, 90, 8, 20], [50, 0, 0, 7], [120, 10, 30, 5]], [2, 0, 1, 3],
                   [150, 60, 0, 40], image_id=7, width=128, height=100)
    # the second box is clipped on two sides, the third has no width, the fourth is cut at x = 128
    assert torch.equal(t["boxes"], torch.tensor([[10.0, 5, 30, 15], [0, 90, 4, 100], [120, 10, 128, 15]]))
    assert t["boxes"].dtype == torch.float32
    assert torch.equal(t["labels"], torch.tensor([2, 0, 3])) and t["labels"].dtype == torch.int64
    assert torch.equal(t["area"], torch.tensor([150.0, 60, 40])) and t["area"].dtype == torch.float32
    assert torch.equal(t["iscrowd"], torch.zeros(3, dtype=torch.int64)) and t["image_id"] == 7
    assert t["orig_size"].tolist() == t["size"].tolist() == [100, 128]
    t["size"][0] = 1  # the transforms replace "size"; "orig_size" must not change with it
    assert t["orig_size"].tolist() == [100, 128]


def test_an_image_without_boxes_has_empty_tables_of_the_right_shape():
    t = raw_target([], [], [], image_id=1, width=64, height=48)
    assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == torch.float32
    assert t["labels"].shape == t["area"].shape == t["iscrowd"].shape == (0,)
    assert t["labels"].dtype == t["iscrowd"].dtype == torch.int64
