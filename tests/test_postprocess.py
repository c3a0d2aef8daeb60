"""postprocess vs transformers' post_process_object_detection, plus hand-computed cases."""
from __future__ import annotations

import pytest
import torch

from yolos.inference.postprocess import postprocess

pil_yolos = pytest.importorskip("transformers.models.yolos.image_processing_pil_yolos")


class _Outputs:  # attribute access, as transformers' model output
    def __init__(self, logits, pred_boxes):
        self.logits, self.pred_boxes = logits, pred_boxes


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7])
def test_matches_transformers_on_random_logits(threshold):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 100, 92, generator=g) * 4
    boxes = torch.rand(3, 100, 4, generator=g)
    sizes = [(480, 640), (800, 533), (1000, 1000)]
    ref = pil_yolos.YolosImageProcessorPil().post_process_object_detection(
        _Outputs(logits, boxes), threshold=threshold, target_sizes=sizes
    )
    for outputs in ({"logits": logits, "pred_boxes": boxes}, _Outputs(logits, boxes)):
        ours = postprocess(outputs, sizes, threshold=threshold)
        assert len(ours) == 3
        for o, r in zip(ours, ref):
            torch.testing.assert_close(o["scores"], r["scores"])
            assert torch.equal(o["labels"], r["labels"])
            torch.testing.assert_close(o["boxes"], r["boxes"])
    # A tensor of sizes is accepted too.
    t = postprocess({"logits": logits, "pred_boxes": boxes}, torch.tensor(sizes), threshold=threshold)
    torch.testing.assert_close(t[1]["boxes"], ref[1]["boxes"])


def test_hand_computed_box_and_no_object_exclusion():
    # Token 0: no-object dominates, but its best *real* class still scores softmax mass.
    # Token 1: class 1 wins clearly. Box (0.5, 0.5, 0.2, 0.4) on a 100 h x 200 w image.
    logits = torch.tensor([[[0.0, 0.0, 10.0], [0.0, 10.0, 0.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.5, 0.5, 0.2, 0.4]]])
    out = postprocess({"logits": logits, "pred_boxes": boxes}, [(100, 200)], threshold=0.5)[0]
    e = torch.exp(torch.tensor(10.0))
    torch.testing.assert_close(out["scores"], (e / (e + 2)).reshape(1))
    assert out["labels"].tolist() == [1]
    torch.testing.assert_close(out["boxes"], torch.tensor([[80.0, 30.0, 120.0, 70.0]]))
    # Strict threshold: a score exactly at the threshold is dropped.
    low = postprocess({"logits": logits, "pred_boxes": boxes}, [(100, 200)], threshold=0.0)[0]
    assert len(low["scores"]) == 2
    s0 = float(low["scores"][0])
    assert len(postprocess({"logits": logits, "pred_boxes": boxes}, None, threshold=s0)[0]["scores"]) == 1
    # No target sizes: normalized boxes.
    torch.testing.assert_close(low["boxes"][0] / torch.tensor([200, 100, 200, 100]), torch.tensor([0.4, 0.3, 0.6, 0.7]))


def test_top_k_keeps_highest_after_threshold():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 50, 6, generator=g) * 3
    boxes = torch.rand(2, 50, 4, generator=g)
    full = postprocess({"logits": logits, "pred_boxes": boxes}, [(10, 10)] * 2, threshold=0.2)
    top = postprocess({"logits": logits, "pred_boxes": boxes}, [(10, 10)] * 2, threshold=0.2, top_k=5)
    for f, t in zip(full, top):
        assert len(t["scores"]) == min(5, len(f["scores"]))
        expected = f["scores"].sort(descending=True).values[:5]
        torch.testing.assert_close(t["scores"], expected)
        for s, b in zip(t["scores"], t["boxes"]):  # each kept score keeps its own box
            i = int((f["scores"] == s).nonzero()[0])
            torch.testing.assert_close(b, f["boxes"][i])
    with pytest.raises(ValueError, match="target_sizes"):
        postprocess({"logits": logits, "pred_boxes": boxes}, [(10, 10)], threshold=0.2)
