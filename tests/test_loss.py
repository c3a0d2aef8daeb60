"""Hungarian matcher and set loss against transformers' DETR/YOLOS loss and a brute-force search."""
from __future__ import annotations

import itertools
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from yolos.box_ops import cxcywh_to_xyxy, generalized_box_iou
from yolos.train.criterion import SetCriterion, loss_normalizers
from yolos.train.matcher import HungarianMatcher

hf_loss = pytest.importorskip("transformers.loss.loss_for_object_detection")


def random_problem(counts, num_queries=12, num_classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(counts)
    outputs = {
        "logits": torch.randn(B, num_queries, num_classes + 1, generator=g) * 3,
        "pred_boxes": torch.rand(B, num_queries, 4, generator=g) * 0.5 + 0.25,
    }
    targets = []
    for n in counts:
        centre = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        size = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        targets.append({"boxes": torch.cat([centre, size], 1),
                        "labels": torch.randint(0, num_classes, (n,), generator=g)})
    return outputs, targets


def reference_cost(logits, boxes, tgt):
    """Cost of one image written out independently (2-D box_ops GIoU, explicit L1)."""
    prob = logits.softmax(-1)
    c_class = -prob[:, tgt["labels"]]
    c_bbox = (boxes[:, None, :] - tgt["boxes"][None, :, :]).abs().sum(-1)
    c_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tgt["boxes"]))
    return 5 * c_bbox + 1 * c_class + 2 * c_giou


def test_matcher_equals_brute_force():
    outputs, targets = random_problem([3, 0, 2, 4], num_queries=6, seed=1)
    indices = HungarianMatcher()(outputs, targets)
    for b, (tgt, (pi, ti)) in enumerate(zip(targets, indices)):
        n = len(tgt["labels"])
        assert len(pi) == len(ti) == n
        if n == 0:
            continue
        cost = reference_cost(outputs["logits"][b], outputs["pred_boxes"][b], tgt)
        best = min(itertools.permutations(range(6), n),
                   key=lambda rows: sum(cost[r, c].item() for c, r in enumerate(rows)))
        ours = dict(zip(ti.tolist(), pi.tolist()))
        assert [ours[c] for c in range(n)] == list(best)


def test_matcher_equals_transformers_matcher():
    outputs, targets = random_problem([5, 1, 0, 9, 12], num_queries=12, seed=2)
    ours = HungarianMatcher(1, 5, 2)(outputs, targets)
    hf_targets = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    theirs = hf_loss.HungarianMatcher(class_cost=1, bbox_cost=5, giou_cost=2)(outputs, hf_targets)
    for (p1, t1), (p2, t2) in zip(ours, theirs):
        assert dict(zip(p1.tolist(), t1.tolist())) == dict(zip(p2.tolist(), t2.tolist()))


def test_matcher_survives_nan_and_inf_predictions():
    outputs, targets = random_problem([3, 2], num_queries=5, seed=3)
    outputs["logits"][0, 1] = float("nan")
    outputs["pred_boxes"][0, :3] = float("nan")
    outputs["pred_boxes"][1, 0] = float("inf")
    outputs["pred_boxes"][1, 1, 2:] = -0.3  # degenerate (negative size)
    indices = HungarianMatcher()(outputs, targets)
    for (pi, ti), n in zip(indices, (3, 2)):
        assert sorted(ti.tolist()) == list(range(n))
        assert len(set(pi.tolist())) == n
    # Rows 0..2 of image 0 have NaN boxes: the two finite rows are always matched first.
    assert {3, 4} <= set(indices[0][0].tolist())


def test_matcher_cost_is_fp32_under_autocast_and_handles_empty_batch():
    outputs, targets = random_problem([2, 3], seed=4)
    half = {k: v.to(torch.bfloat16) for k, v in outputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = HungarianMatcher().cost_matrix(half, targets)
    assert cost.dtype == torch.float32 and cost.shape == (2, 12, 3)
    assert torch.isfinite(cost).all()
    empty = HungarianMatcher()(outputs, [{"labels": torch.zeros(0, dtype=torch.int64),
                                          "boxes": torch.zeros(0, 4)}] * 2)
    assert all(len(p) == 0 and len(t) == 0 for p, t in empty)


def hf_reference(outputs, targets, num_classes):
    from transformers import YolosConfig

    config = YolosConfig(num_labels=num_classes, class_cost=1, bbox_cost=5, giou_cost=2,
                         bbox_loss_coefficient=5, giou_loss_coefficient=2, eos_coefficient=0.1,
                         auxiliary_loss=False)
    labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    loss, loss_dict, _ = hf_loss.ForObjectDetectionLoss(
        outputs["logits"], labels, "cpu", outputs["pred_boxes"], config)
    return loss, loss_dict


@pytest.mark.parametrize("counts", [[3, 0, 5, 1], [1], [0, 7]])
def test_loss_equals_transformers(counts):
    num_classes = 7
    outputs, targets = random_problem(counts, num_queries=10, num_classes=num_classes, seed=5)
    outputs = {k: v.requires_grad_() for k, v in outputs.items()}
    ours = SetCriterion(num_classes, HungarianMatcher(1, 5, 2), eos_coef=0.1)(outputs, targets)
    loss, ref = hf_reference(outputs, targets, num_classes)
    for key in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error"):
        assert torch.allclose(ours[key], ref[key], atol=1e-5, rtol=0), key
    assert torch.allclose(ours["loss"], loss, atol=1e-5, rtol=0)
    inputs = [outputs["logits"], outputs["pred_boxes"]]
    g_ours = torch.autograd.grad(ours["loss"], inputs, retain_graph=True)
    g_ref = torch.autograd.grad(loss, inputs)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-6)


def test_class_error_and_no_target_batch():
    outputs, targets = random_problem([2, 0], num_queries=4, num_classes=3, seed=6)
    crit = SetCriterion(3, HungarianMatcher())
    # Make every matched query's argmax its target's label; that lowers the cost of the
    # current matching by the most any matching can drop, so it stays the optimum.
    indices = crit.matcher(outputs, targets)
    for q, t in zip(*indices[0]):
        outputs["logits"][0, q] = -10.0
        outputs["logits"][0, q, targets[0]["labels"][t]] = 10.0
    out = crit(outputs, targets)
    assert out["class_error"].item() == pytest.approx(0.0)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    out = crit(outputs, empty)
    assert out["loss_bbox"].item() == 0 and out["loss_giou"].item() == 0
    assert torch.isfinite(out["loss"]) and out["class_error"].item() == 100


def _dist_worker(rank, world, port, queue):
    import torch.distributed as dist

    from yolos.evaluation.coco_eval import gather_results

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        targets = [{"labels": torch.zeros(n, dtype=torch.int64)} for n in ([3, 4] if rank == 0 else [1])]
        num = loss_normalizers(targets, 10, 0.1, "cpu")
        # rank 1 repeats image 7 (DistributedSampler padding): it must appear once.
        mine = [{"image_id": 5, "score": 0.5}, {"image_id": 7, "score": 0.1}] if rank == 0 else \
            [{"image_id": 7, "score": 0.1}, {"image_id": 9, "score": 0.2}]
        queue.put((rank, num, gather_results(mine)))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_num_boxes_and_results_are_reduced_across_ranks():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # no re-import of torch/transformers: fast
    queue = ctx.Queue()
    procs = [ctx.Process(target=_dist_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((r, (n, res)) for r, n, res in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    for rank in (0, 1):
        num, results = got[rank]
        assert num["num_boxes"] == pytest.approx((7 + 1) / 2)
        # class weights: rank 0 matches 7 of 20 tokens, rank 1 1 of 10; unmatched count 0.1
        assert num["class_weight"] == pytest.approx((7 + 0.1 * 13 + 1 + 0.1 * 9) / 2)
        assert sorted(r["image_id"] for r in results) == [5, 7, 9]


@pytest.mark.gpu
def test_cuda_matching_under_autocast_equals_cpu():
    outputs, targets = random_problem([4, 0, 9, 2], num_queries=20, seed=7)
    cpu = HungarianMatcher()(outputs, targets)
    cuda_out = {k: v.cuda() for k, v in outputs.items()}
    cuda_tgt = [{k: v.cuda() for k, v in t.items()} for t in targets]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gpu = HungarianMatcher()(cuda_out, cuda_tgt)
        losses = SetCriterion(7, HungarianMatcher())(cuda_out, cuda_tgt)
    for (p1, t1), (p2, t2) in zip(cpu, gpu):
        assert torch.equal(p1, p2) and torch.equal(t1, t2)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])


def test_iou_aware_class_loss_by_hand():
    """class_loss="iou": one image, two tokens, one object. The matched token's target is its class
    with probability q = IoU (its box 0.2 wide against the object's 0.4: q = 0.5), no-object with
    1 - q; the other token targets no-object at weight eos_coef. Computed here from the formula."""
    logits = torch.tensor([[[1.0, -0.5, 0.3], [0.2, 0.1, 2.0]]], requires_grad=True)  # 2 classes + no-object
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.05, 0.05]]], requires_grad=True)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    criterion = SetCriterion(2, eos_coef=0.25, class_loss="iou")
    got = criterion({"logits": logits, "pred_boxes": boxes}, targets)["loss_ce"]
    logp = torch.log_softmax(logits.detach(), -1)[0]
    q = 0.5
    want = (-(q * logp[0, 0] + (1 - q) * logp[0, 2]) - 0.25 * logp[1, 2]) / (1 + 0.25)
    assert torch.allclose(got, want, atol=1e-6)
    got.backward()
    assert boxes.grad is None or boxes.grad.abs().sum() == 0  # no gradient through q
    hard = SetCriterion(2, eos_coef=0.25)  # q = 1 (a perfect box) is DETR's cross-entropy
    exact = {"logits": logits.detach(), "pred_boxes": torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.05, 0.05]]])}
    assert torch.allclose(criterion(exact, targets)["loss_ce"], hard(exact, targets)["loss_ce"], atol=1e-6)
    with pytest.raises(ValueError, match="class_loss"):
        SetCriterion(2, class_loss="focal")


def test_iou_aware_class_loss_power_by_hand():
    """iou_power p: the matched token's class share is q^p (q = 0.5, p = 0.25: 0.841), no-object the
    rest; p must be above 0, and the config refuses it without the IoU-aware loss, where it would do nothing."""
    from yolos.train.config import TrainConfig

    logits = torch.tensor([[[1.0, -0.5, 0.3], [0.2, 0.1, 2.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.05, 0.05]]])
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    got = SetCriterion(2, eos_coef=0.25, class_loss="iou", iou_power=0.25)(
        {"logits": logits, "pred_boxes": boxes}, targets)["loss_ce"]
    logp = torch.log_softmax(logits, -1)[0]
    share = 0.5 ** 0.25
    want = (-(share * logp[0, 0] + (1 - share) * logp[0, 2]) - 0.25 * logp[1, 2]) / (1 + 0.25)
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="iou_power"):
        SetCriterion(2, class_loss="iou", iou_power=0.0)
    with pytest.raises(ValueError, match="--iou-power: only with --class-loss iou"):
        TrainConfig(data="d.yaml", iou_power=0.5)
    assert TrainConfig(data="d.yaml", class_loss="iou", iou_power=0.5).iou_power == 0.5
