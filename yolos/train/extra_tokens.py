"""Training-only parts of a step: one-to-one groups, denoising sets, a dense head (issue 29).

The first two add tokens to a training step after the model's own [DET] tokens; the third reads
the patch tokens. All three exist nowhere else: the model, its checkpoints, inference and the
exported graph are those of a run without them.

* **Groups** (Group DETR): ``K - 1`` more sets of ``T`` tokens, learned here, each at the [DET]
  tokens' position embeddings. Each set is matched one-to-one to the objects by the run's matcher
  (anchor matching included) and adds its set loss, so every object trains ``K`` tokens per step
  through the shared blocks and heads. The model's own set is the one kept.
* **Denoising** (DN-DETR): ``G`` sets of the image's ground-truth objects with noised boxes and
  labels. A token is its (noised) label's embedding, the model's patch position embedding at the
  noised box centre (bilinear) and a projection of the noised width and height; it is trained to
  give back the true class and box (no matching: token ``j`` answers for object ``j``). Images
  with fewer objects than the batch's most are padded with zero tokens, left out of the loss.
* **Dense head** (one-to-many on the patches, as Co-DETR's auxiliary heads on the encoder): a
  LayerNorm and two linear maps read the patch tokens entering the last block (what its [DET]
  queries attend to). A patch whose centre lies in an object's box, or holds its centre, answers
  for that object (the smallest box where several cover it): its class (cross-entropy with the
  criterion's no-object weight for the other patches of the image) and its box (L1 and GIoU, the
  criterion's weights, over the number of such patches); the box is the patch centre moved by up
  to half the image, and a size. Padding patches are left out. It adds no token and no mask.

The attention mask (True: may attend), the same for every image and head::

                 [CLS]+patches  [DET]  group 1 .. group K-1  dn 1 .. dn G
    [CLS]+patches     x           x
    [DET]             x           x
    group k           x                  x (its own set only)
    dn set g          x                                     x (its own set only)

So the model's own tokens never see an extra token (nothing leaks from the ground truth in the
denoising sets to the patches or to the matched [DET] tokens), and the extra sets never see the
[DET] tokens or each other. Noise comes from a generator the caller seeds per step, so a resumed
run draws what an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..box_ops import cxcywh_to_xyxy, generalized_box_iou
from ..config import ModelConfig
from ..distributed import all_reduce_mean

DN_BOX_NOISE = 0.4  # DN-DETR's lambda: centre moves up to 0.4 * side / 2, sides scale by 1 +- 0.4
DN_LABEL_NOISE = 0.2  # DN-DETR: a fifth of the labels flipped to a random class


@dataclass
class ExtraBatch:
    """One step's extra tokens: ``tokens [B, E, D]`` (position included), ``mask [S + E, S + E]``,
    ``groups`` extra one-to-one sets of ``T`` tokens first, then ``dn_sets`` denoising sets of
    ``n`` tokens each with their true ``dn_labels [B, n]`` (-1: padding) and ``dn_boxes [B, n, 4]``;
    with the dense head, each patch's ``dense_labels [B, P]`` (``num_classes``: none, -1: padding),
    ``dense_boxes [B, P, 4]`` and ``patch_centres [B, P, 2]`` in the targets' frame."""

    tokens: Tensor
    mask: Tensor
    groups: int
    dn_sets: int
    dn_labels: Tensor
    dn_boxes: Tensor
    dense_labels: Tensor | None = None
    dense_boxes: Tensor | None = None
    patch_centres: Tensor | None = None

    def model_inputs(self) -> dict:
        inputs = {"extra_tokens": self.tokens, "extra_mask": self.mask} if self.tokens.shape[1] else {}
        if self.dense_labels is not None:
            inputs["output_patch_features"] = True
        return inputs


class ExtraTokens(nn.Module):
    """The training-only parameters of ``groups`` (K, 1: off), ``denoising`` (G sets, 0: off) and
    ``dense`` (the dense head's loss weight, 0: off) for a model of ``config``: the extra sets'
    tokens ``[K - 1, T, D]``, the denoising label embedding ``[num_classes, D]`` and size
    projection ``2 -> D``, the dense head's LayerNorm, ``D -> num_classes + 1`` and ``D -> 4``."""

    def __init__(self, config: ModelConfig, groups: int = 1, denoising: int = 0, dense: float = 0.0):
        super().__init__()
        if groups < 1 or denoising < 0 or dense < 0:
            raise ValueError(f"groups must be >= 1, denoising and dense >= 0, got {groups}, {denoising}, {dense}")
        d, t = config.hidden_size, config.num_det_tokens
        self.groups, self.denoising, self.dense, self.num_classes = groups, denoising, dense, config.num_classes
        self.group_tokens = nn.Parameter(torch.zeros(groups - 1, t, d)) if groups > 1 else None
        self.label_embed = nn.Embedding(config.num_classes, d) if denoising else None
        self.size_embed = nn.Linear(2, d) if denoising else None
        self.dense_head = nn.ModuleDict({"norm": nn.LayerNorm(d), "classes": nn.Linear(d, config.num_classes + 1),
                                         "boxes": nn.Linear(d, 4)}) if dense else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Group tokens as the [DET] tokens start (trunc-normal .02, each set its own draw: equal
        sets would stay equal); label embeddings small, the size projection zero, so a denoising
        token starts as its box centre's position code."""
        if self.group_tokens is not None:
            nn.init.trunc_normal_(self.group_tokens, std=0.02)
        if self.denoising:
            nn.init.normal_(self.label_embed.weight, std=0.02)
            nn.init.zeros_(self.size_embed.weight)
            nn.init.zeros_(self.size_embed.bias)
        if self.dense_head is not None:  # boxes start at the patch centre, half the image wide
            nn.init.normal_(self.dense_head["classes"].weight, std=0.02)
            nn.init.zeros_(self.dense_head["classes"].bias)
            nn.init.zeros_(self.dense_head["boxes"].weight)
            nn.init.zeros_(self.dense_head["boxes"].bias)

    def prepare(self, model, pixel_values: Tensor, targets: list[dict], generator: torch.Generator) -> ExtraBatch:
        """The extra tokens and mask of one batch (``pixel_values [B, 3, H, W]``, ``targets`` as
        the criterion takes them) for ``model`` (a :class:`yolos.model.YOLOS`)."""
        c = model.config
        p, t = c.patch_size, c.num_det_tokens
        grid = (pixel_values.shape[-2] // p, pixel_values.shape[-1] // p)
        pos, _ = model.position_embeddings(grid)  # [1, S, D]
        b, device = pixel_values.shape[0], pixel_values.device
        parts, sizes = [], []
        if self.group_tokens is not None:
            det_pos = pos[:, -t:]  # [1, T, D]
            parts.append((self.group_tokens + det_pos).reshape(1, -1, pos.shape[-1]).expand(b, -1, -1))
            sizes += [t] * (self.groups - 1)
        n = max((len(tg["labels"]) for tg in targets), default=0) if self.denoising else 0
        labels = torch.full((b, n), -1, dtype=torch.int64, device=device)
        boxes = torch.zeros(b, n, 4, device=device)
        for i, tg in enumerate(targets if n else []):
            labels[i, :len(tg["labels"])] = tg["labels"].to(device)
            boxes[i, :len(tg["labels"])] = tg["boxes"].to(device=device, dtype=torch.float32)
        if n:
            parts += [self._denoising_tokens(pos, grid, labels, boxes, generator) for _ in range(self.denoising)]
            sizes += [n] * self.denoising
        tokens = torch.cat(parts, 1) if parts else pos.new_zeros(b, 0, pos.shape[-1])
        mask = extra_token_mask(pos.shape[1], 1 + grid[0] * grid[1], sizes, device)
        dense = dense_targets(targets, grid, p, pixel_values.shape[-2:], self.num_classes) if self.dense else {}
        return ExtraBatch(tokens, mask, self.groups - 1, self.denoising if n else 0, labels, boxes,
                          **{k: v.to(device) for k, v in dense.items()})

    def _denoising_tokens(self, pos: Tensor, grid: tuple[int, int], labels: Tensor, boxes: Tensor,
                          generator: torch.Generator) -> Tensor:
        """``[B, n, D]``: one denoising set; padding (label -1) is a zero token."""
        b, n = labels.shape
        u = torch.rand(b, n, 5, generator=generator).to(boxes.device) * 2 - 1  # in [-1, 1)
        cxcy = (boxes[..., :2] + u[..., :2] * DN_BOX_NOISE * boxes[..., 2:] / 2).clamp(0, 1)
        wh = (boxes[..., 2:] * (1 + u[..., 2:4] * DN_BOX_NOISE)).clamp(1e-3, 1)
        flip = torch.rand(b, n, generator=generator).to(boxes.device) < DN_LABEL_NOISE
        random_labels = torch.randint(0, self.num_classes, (b, n), generator=generator).to(boxes.device)
        noised = torch.where(flip, random_labels, labels).clamp(min=0)
        gh, gw = grid
        table = pos[0, 1:1 + gh * gw].reshape(gh, gw, -1).permute(2, 0, 1)[None]  # [1, D, gh, gw]
        where = (cxcy * 2 - 1).reshape(1, b * n, 1, 2).to(table.dtype)  # grid_sample's (x, y) in [-1, 1]
        code = F.grid_sample(table, where, align_corners=False, padding_mode="border")  # [1, D, B*n, 1]
        token = code[0, :, :, 0].T.reshape(b, n, -1) + self.label_embed(noised) + self.size_embed(wh)
        return token * (labels >= 0)[..., None].to(token.dtype)

    def normalizers(self, batches: list[tuple[Tensor, list[dict]]], patch: int, eos_coef: float,
                    device) -> dict[str, float]:
        """The dense loss's divisors for one optimizer step from all its micro-batches
        (``[(pixel_values, targets)]``), averaged over ranks as :func:`loss_normalizers` does, so
        that N processes or N accumulated micro-batches take the step of one batch of them all:
        ``dense_positives`` (patches answering for an object, at least 1) and
        ``dense_class_weight`` (1 per such patch, ``eos_coef`` per other patch). Empty when off."""
        if not self.dense:
            return {}
        positives = others = 0
        for pixel_values, targets in batches:
            grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
            labels = dense_targets(targets, grid, patch, pixel_values.shape[-2:], self.num_classes)["dense_labels"]
            positives += int(((labels >= 0) & (labels < self.num_classes)).sum())
            others += int((labels == self.num_classes).sum())
        mean = all_reduce_mean({"positives": positives, "weight": positives + eos_coef * others}, device)
        return {"dense_positives": max(mean["positives"], 1.0), "dense_class_weight": max(mean["weight"], 1e-12)}

    def losses(self, outputs: dict, targets: list[dict], batch: ExtraBatch, criterion,
               normalizers: dict) -> dict[str, Tensor]:
        """``loss_groups`` (the set loss of every extra group, summed, as Group DETR), ``loss_dn``
        (class cross-entropy, L1 and GIoU of the denoising tokens against their true objects, with
        the criterion's weights, over ``num_boxes`` per set) and ``loss_dense`` (the dense head's,
        times ``dense``, over the step's :meth:`normalizers`), each only when on."""
        out = {}
        if batch.dense_labels is not None:
            out["loss_dense"] = self.dense * self._dense_loss(outputs["patch_features"].float(), batch, criterion,
                                                              normalizers)
        if not (batch.groups or batch.dn_sets):
            return out
        logits, boxes = outputs["extra_logits"].float(), outputs["extra_boxes"].float()
        t = outputs["logits"].shape[1]
        if batch.groups:
            out["loss_groups"] = sum(
                criterion({"logits": logits[:, g * t:(g + 1) * t], "pred_boxes": boxes[:, g * t:(g + 1) * t]},
                          targets, normalizers)["loss"] for g in range(batch.groups))
        if batch.dn_sets:
            out["loss_dn"] = self._denoising_loss(logits[:, batch.groups * t:], boxes[:, batch.groups * t:],
                                                  batch, criterion, normalizers["num_boxes"])
        return out

    def _denoising_loss(self, logits: Tensor, boxes: Tensor, batch: ExtraBatch, criterion,
                        num_boxes: float) -> Tensor:
        b, n = batch.dn_labels.shape
        labels = batch.dn_labels.repeat(1, batch.dn_sets)  # [B, G*n], the sets side by side
        real = labels >= 0
        true_boxes = batch.dn_boxes.repeat(1, batch.dn_sets, 1)[real]
        got = boxes[real]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            ce = F.cross_entropy(logits[real], labels[real], reduction="sum")
            l1 = F.l1_loss(got, true_boxes, reduction="sum")
            giou = generalized_box_iou(cxcywh_to_xyxy(got)[:, None], cxcywh_to_xyxy(true_boxes)[:, None])
            w = criterion.weights
            total = w["loss_ce"] * ce + w["loss_bbox"] * l1 + w["loss_giou"] * (1 - giou.reshape(-1)).sum()
        return total / (num_boxes * batch.dn_sets)

    def _dense_loss(self, features: Tensor, batch: ExtraBatch, criterion, normalizers: dict) -> Tensor:
        head, w = self.dense_head, criterion.weights
        with torch.autocast(device_type=features.device.type, enabled=False):
            h = head["norm"](features)
            logits, raw = head["classes"](h), head["boxes"](h)
            boxes = torch.cat([batch.patch_centres + torch.tanh(raw[..., :2]) / 2, raw[..., 2:].sigmoid()], -1)
            labels, real = batch.dense_labels, batch.dense_labels >= 0
            ce = F.cross_entropy(logits[real], labels[real], weight=criterion.empty_weight.to(logits.device),
                                 reduction="sum")
            positive = real & (labels < self.num_classes)
            got, true = boxes[positive], batch.dense_boxes[positive]
            l1 = F.l1_loss(got, true, reduction="sum")
            giou = generalized_box_iou(cxcywh_to_xyxy(got)[:, None], cxcywh_to_xyxy(true)[:, None]).reshape(-1)
            box = w["loss_bbox"] * l1 + w["loss_giou"] * (1 - giou).sum()
        return w["loss_ce"] * ce / normalizers["dense_class_weight"] + box / normalizers["dense_positives"]


def dense_targets(targets: list[dict], grid: tuple[int, int], patch: int, padded: tuple[int, int],
                  num_classes: int) -> dict[str, Tensor]:
    """What each patch of a ``[B, 3, *padded]`` batch answers for in the dense head's loss:
    ``dense_labels [B, P]`` (``num_classes``: no object; -1: a padding patch, whose centre lies
    outside the image), ``dense_boxes [B, P, 4]`` (its object's box) and ``patch_centres [B, P, 2]``,
    all in the targets' frame (each image's own size, ``target["size"]`` ``(h, w)``, else the
    padded one). A patch answers for the smallest box that covers its centre; every object also
    gets the patch that holds its centre, so objects smaller than a patch are never left out."""
    gh, gw = grid
    b, n = len(targets), max((len(tg["labels"]) for tg in targets), default=0)
    # the whole batch at once, objects padded to the most any image has (python per image costs
    # ~1 ms an image on a slow core, a tenth of a step for 32 images)
    sizes = torch.tensor([[float(v) for v in tg.get("size", padded)] for tg in targets]).reshape(b, 2)  # (h, w)
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centre_px = torch.stack([cols.flatten() + 0.5, rows.flatten() + 0.5], -1) * patch  # [P, 2] (x, y)
    centres = centre_px / sizes.flip(-1)[:, None]  # [B, P, 2]
    labels = torch.full((b, gh * gw), num_classes, dtype=torch.int64)
    labels[(centres >= 1).any(-1)] = -1
    boxes = torch.zeros(b, gh * gw, 4)
    if n:
        box, cls = torch.zeros(b, n, 4), torch.zeros(b, n, dtype=torch.int64)
        real = torch.zeros(b, n, dtype=torch.bool)
        for i, tg in enumerate(targets):
            k = len(tg["labels"])
            box[i, :k], cls[i, :k], real[i, :k] = tg["boxes"].detach().float().cpu(), tg["labels"].cpu(), True
        lo, hi = box[..., :2] - box[..., 2:] / 2, box[..., :2] + box[..., 2:] / 2  # [B, n, 2]
        covers = ((centres[:, :, None] >= lo[:, None]) & (centres[:, :, None] <= hi[:, None])).all(-1)  # [B, P, n]
        holder = ((box[..., 1] * sizes[:, :1] / patch).long().clamp(0, gh - 1) * gw
                  + (box[..., 0] * sizes[:, 1:] / patch).long().clamp(0, gw - 1))  # [B, n]: holds the centre
        covers.scatter_(1, holder[:, None], True)
        covers &= real[:, None]
        area = (box[..., 2] * box[..., 3])[:, None].expand_as(covers).masked_fill(~covers, float("inf"))
        smallest, which = area.min(-1)  # [B, P]
        hit = torch.isfinite(smallest)
        labels[hit] = cls.gather(1, which)[hit]
        boxes[hit] = box.gather(1, which[..., None].expand(-1, -1, 4))[hit]
    return {"dense_labels": labels, "dense_boxes": boxes, "patch_centres": centres}


def extra_token_mask(s: int, visible: int, sizes: list[int], device=None) -> Tensor:
    """``[S + E, S + E]`` boolean attention mask (True: may attend) for ``S`` model tokens whose
    first ``visible`` ([CLS] and patches) the extra sets may see, and extra sets of ``sizes``
    (E = their sum): the model's tokens see only each other; each set sees ``visible`` and
    itself."""
    total = s + sum(sizes)
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[:s, :s] = True
    start = s
    for size in sizes:
        mask[start:start + size, :visible] = True
        mask[start:start + size, start:start + size] = True
        start += size
    return mask


def extra_tokens_for(cfg, model_config: ModelConfig) -> ExtraTokens | None:
    """The run's :class:`ExtraTokens` (``cfg``: a resolved TrainConfig), or None when all off."""
    groups, denoising, dense = cfg.det_groups or 1, cfg.denoising or 0, cfg.dense_aux or 0.0
    if groups == 1 and denoising == 0 and dense == 0:
        return None
    return ExtraTokens(model_config, groups, denoising, dense)
