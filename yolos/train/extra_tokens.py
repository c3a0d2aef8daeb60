"""Training-only tokens beside the [DET] tokens: one-to-one groups and denoising sets (issue 29).

Both add tokens to a training step after the model's own [DET] tokens and exist nowhere else:
the model, its checkpoints, inference and the exported graph are those of a run without them.

* **Groups** (Group DETR): ``K - 1`` more sets of ``T`` tokens, learned here, each at the [DET]
  tokens' position embeddings. Each set is matched one-to-one to the objects by the run's matcher
  (anchor matching included) and adds its set loss, so every object trains ``K`` tokens per step
  through the shared blocks and heads. The model's own set is the one kept.
* **Denoising** (DN-DETR): ``G`` sets of the image's ground-truth objects with noised boxes and
  labels. A token is its (noised) label's embedding, the model's patch position embedding at the
  noised box centre (bilinear) and a projection of the noised width and height; it is trained to
  give back the true class and box (no matching: token ``j`` answers for object ``j``). Images
  with fewer objects than the batch's most are padded with zero tokens, left out of the loss.

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

DN_BOX_NOISE = 0.4  # DN-DETR's lambda: centre moves up to 0.4 * side / 2, sides scale by 1 +- 0.4
DN_LABEL_NOISE = 0.2  # DN-DETR: a fifth of the labels flipped to a random class


@dataclass
class ExtraBatch:
    """One step's extra tokens: ``tokens [B, E, D]`` (position included), ``mask [S + E, S + E]``,
    ``groups`` extra one-to-one sets of ``T`` tokens first, then ``dn_sets`` denoising sets of
    ``n`` tokens each with their true ``dn_labels [B, n]`` (-1: padding) and ``dn_boxes [B, n, 4]``."""

    tokens: Tensor
    mask: Tensor
    groups: int
    dn_sets: int
    dn_labels: Tensor
    dn_boxes: Tensor

    def model_inputs(self) -> dict:
        return {"extra_tokens": self.tokens, "extra_mask": self.mask}


class ExtraTokens(nn.Module):
    """The training-only parameters of ``groups`` (K, 1: off) and ``denoising`` (G sets, 0: off)
    for a model of ``config``: the extra sets' tokens ``[K - 1, T, D]``, the denoising label
    embedding ``[num_classes, D]`` and size projection ``2 -> D``."""

    def __init__(self, config: ModelConfig, groups: int = 1, denoising: int = 0):
        super().__init__()
        if groups < 1 or denoising < 0:
            raise ValueError(f"groups must be >= 1 and denoising >= 0, got {groups} and {denoising}")
        d, t = config.hidden_size, config.num_det_tokens
        self.groups, self.denoising, self.num_classes = groups, denoising, config.num_classes
        self.group_tokens = nn.Parameter(torch.zeros(groups - 1, t, d)) if groups > 1 else None
        self.label_embed = nn.Embedding(config.num_classes, d) if denoising else None
        self.size_embed = nn.Linear(2, d) if denoising else None
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
        return ExtraBatch(tokens, mask, self.groups - 1, self.denoising if n else 0, labels, boxes)

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

    def losses(self, outputs: dict, targets: list[dict], batch: ExtraBatch, criterion,
               normalizers: dict) -> dict[str, Tensor]:
        """``loss_groups`` (the set loss of every extra group, summed, as Group DETR) and
        ``loss_dn`` (class cross-entropy, L1 and GIoU of the denoising tokens against their true
        objects, with the criterion's weights, over ``num_boxes`` per set), each only when on."""
        logits, boxes = outputs["extra_logits"].float(), outputs["extra_boxes"].float()
        t = outputs["logits"].shape[1]
        out = {}
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
    """The run's :class:`ExtraTokens` (``cfg``: a resolved TrainConfig), or None when both off."""
    groups, denoising = cfg.det_groups or 1, cfg.denoising or 0
    if groups == 1 and denoising == 0:
        return None
    return ExtraTokens(model_config, groups, denoising)
