"""Run a model over a COCO dataset and score it (hustvl/YOLOS ``engine.evaluate`` + ``CocoEvaluator``).

Every [DET] prediction goes to COCO eval (threshold 0, no NMS, no top-k: the paper's
protocol); labels are mapped back to the dataset's category ids; boxes are scaled to the
original image. Batches only group images of the same transformed size, so no padding is ever
added and the scores equal batch-size-1 scores (YOLOS has no pixel mask).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor

from .. import distributed as D
from ..errors import PredictionError, YolosError
from ..inference.batching import same_size_batches
from ..inference.detections import coco_records
from ..inference.postprocess import non_finite, postprocess
from ..inference.precision import precision_for
from .coco_eval import STAT_NAMES, gather_results, per_class_metrics, pr_curves, run_cocoeval


def _postprocess(outputs: dict, target_sizes: Tensor) -> list[dict]:
    """All T detections per image (scores, labels, xyxy boxes in original pixels). The
    threshold is -1, not 0: a float32 softmax can underflow to exactly 0, and hustvl/YOLOS's
    ``PostProcess`` has no threshold at all."""
    return postprocess(outputs, target_sizes, threshold=-1.0)


def _batches(dataset, batch_size: int):
    """Lists of (image, target) of one transformed size, at most ``batch_size`` long."""
    items = (dataset[i] for i in range(len(dataset)))
    for _, group in same_size_batches(items, lambda item: tuple(item[0].shape[-2:]), batch_size, 4 * batch_size):
        yield group


@torch.no_grad()
def predict_coco_results(model, dataset, batch_size: int = 1, device="cpu",
                         progress: bool = True, dtype=None) -> list[dict]:
    """COCO result dicts (xywh boxes in original pixels, category ids) for every image;
    ``dtype``: the compute dtype (:func:`yolos.inference.predictor.precision_for`)."""
    compute = precision_for(model, dtype)
    model_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if model_classes is not None and model_classes != dataset.num_classes:
        raise YolosError(f"the model predicts {model_classes} classes but the dataset "
                         f"{dataset.annotation_file} has num_classes={dataset.num_classes}; "
                         f"fine-tune the model on it first")
    was_training = model.training
    model.eval()
    device = torch.device(device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), desc="evaluate", unit="img")
    results: list[dict] = []
    try:
        for batch in _batches(dataset, max(1, batch_size)):
            pixel_values = torch.stack([im for im, _ in batch]).to(device)
            with compute():
                outputs = model(pixel_values)
            broken = [batch[i][1]["image_id"] for i in non_finite(outputs)]
            if broken:
                raise PredictionError(f"the model's outputs are not finite (NaN or inf) for image id "
                                      f"{broken[0]} of {dataset.annotation_file}: no AP can be computed from them")
            sizes = torch.stack([t["orig_size"] for _, t in batch]).to(device)
            for (_, target), det in zip(batch, _postprocess(outputs, sizes)):
                results += coco_records(target["image_id"], det["boxes"].cpu(), det["scores"].cpu(),
                                        det["labels"].cpu(), dataset.label_to_category_id)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return results


def evaluate(model, dataset, batch_size: int = 1, device="cpu", progress: bool = True,
             print_summary: bool = False, dtype=None, details: bool = False) -> tuple[dict, list[dict]]:
    """``(stats, results)``: COCO AP/AR (see :data:`yolos.evaluation.coco_eval.STAT_NAMES`)
    of ``model`` (a DDP wrapper is unwrapped) on ``dataset`` (a
    :class:`yolos.data.coco.DetectionDataset` built with eval transforms, in the model's label
    space), scored against the dataset's checked ground truth on its images only, and the raw
    COCO results (the dataset's category ids). ``details``: ``stats`` also holds ``per_class``
    (COCO's per-category AP, AP50, AP75, AR, instances), ``pr_curves`` (precision at IoU 0.5 per
    category at the ``recall_points``).

    Under torchrun (a process group initialized) each process predicts a strided shard of the
    images and the results are gathered before scoring, so every process gets the same stats
    (the progress bar shows on process 0 only)."""
    model = D.unwrap(model)
    shard, rank = dataset, 0
    if D.is_dist():
        rank, world = D.dist.get_rank(), D.dist.get_world_size()
        shard = copy.copy(dataset)
        shard.ids = dataset.ids[rank::world]
    results = predict_coco_results(model, shard, batch_size=batch_size, device=device,
                                   progress=progress and rank == 0, dtype=dtype)
    results = gather_results(results)
    ev = run_cocoeval(dataset.ground_truth(), results, image_ids=dataset.ids, print_summary=print_summary)
    stats = {name: 0.0 for name in STAT_NAMES} if ev is None else \
        {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:12])}
    if details and ev is not None:
        stats["per_class"] = per_class_metrics(ev)
        stats["pr_curves"] = pr_curves(ev)
        stats["recall_points"] = [float(r) for r in ev.params.recThrs]
    return stats, results
