"""YOLOS: a plain ViT over [CLS | patches | DET] tokens with two MLP heads on the [DET] outputs."""
from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from ..config import ModelConfig
from .pos_embed import resample_pos_embed
from .vit import Block, HeadMLP, PatchEmbed


class YOLOS(nn.Module):
    """The detector. Parameter names follow the original hustvl/YOLOS backbone (minus its
    ``backbone.`` prefix), so converting that format is a rename; transformers' names are
    mapped in :mod:`yolos.checkpoint.hf`.

    Parameters:
        cls_token ``[1, 1, D]``, det_tokens ``[1, T, D]``,
        pos_embed ``[1, 1 + gh*gw + T, D]`` laid out [cls | grid row-major | det],
        mid_pos_embed ``[L-1, 1, 1 + gh*gw + T, D]`` (only when ``config.mid_pos_embed``),
        where ``(gh, gw) = config.grid_size``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        d = c.hidden_size
        self.patch_embed = PatchEmbed(c.patch_size, c.num_channels, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.det_tokens = nn.Parameter(torch.zeros(1, c.num_det_tokens, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.seq_len, d))
        if c.mid_pos_embed:
            self.mid_pos_embed = nn.Parameter(torch.zeros(c.depth - 1, 1, c.seq_len, d))
        else:
            self.register_parameter("mid_pos_embed", None)
        self.blocks = nn.ModuleList(
            Block(d, c.num_heads, c.mlp_dim, c.layer_norm_eps) for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.class_head = HeadMLP(d, d, c.num_classes + 1)
        self.box_head = HeadMLP(d, d, 4)
        self.grad_checkpointing = False
        self._pos_cache: dict = {}
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """hustvl/YOLOS initialization: trunc-normal(.02) tokens, position embeddings and backbone
        Linears; LayerNorm 1/0; heads keep PyTorch's default Linear init (hustvl/YOLOS never re-inits them)."""
        for p in (self.cls_token, self.det_tokens, self.pos_embed, self.mid_pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for head in (self.class_head, self.box_head):
            for layer in head.layers:
                layer.reset_parameters()

    @torch.no_grad()
    def remap_classes(self, rows: list[int | None], class_names: dict[int, str] | None = None,
                      category_ids: list[int] | None = None) -> None:
        """Give the class head a new label set: new label ``j`` keeps old label ``rows[j]``'s
        output row of the head's last layer, or starts fresh (``None``: PyTorch's Linear init).
        The no-object row, the head's hidden layers, the box head and the [DET] tokens are kept.
        This is how a checkpoint is fine-tuned on other classes: the classes it shares with the
        data (by name) keep what they learned, in the data's order."""
        last = self.class_head.layers[-1]
        if any(r is not None and not 0 <= r < last.out_features - 1 for r in rows):
            raise ValueError(f"rows must be labels 0..{last.out_features - 2} or None, got {rows}")
        fresh = nn.Linear(last.in_features, len(rows) + 1).to(last.weight.device, last.weight.dtype)
        for j, r in enumerate(rows):
            if r is not None:
                fresh.weight[j], fresh.bias[j] = last.weight[r], last.bias[r]
        fresh.weight[-1], fresh.bias[-1] = last.weight[-1], last.bias[-1]
        self.class_head.layers[-1] = fresh
        self.config = self.config.replace(num_classes=len(rows), class_names=class_names,
                                          category_ids=category_ids)

    @torch.no_grad()
    def keep_det_tokens(self, indices: list[int]) -> None:
        """Keep only the [DET] tokens ``indices`` (distinct, in ``0..T-1``; kept in the order
        given), with their position embedding rows (initial and mid). Everything else is
        unchanged; the kept tokens' outputs do change, since they attended to the dropped ones.
        This is how a fine-tune trains with fewer tokens than its checkpoint has."""
        t = self.config.num_det_tokens
        if not indices or len(set(indices)) != len(indices) or not all(0 <= i < t for i in indices):
            raise ValueError(f"[DET] tokens to keep must be distinct indices in 0..{t - 1}, got {indices}")
        keep = torch.as_tensor(indices, dtype=torch.long, device=self.det_tokens.device)
        s = self.pos_embed.shape[1] - t  # [CLS] and the grid come first

        def rows(table: Tensor) -> nn.Parameter:  # [..., S, D] -> [..., s + K, D]
            return nn.Parameter(torch.cat([table[..., :s, :], table[..., s:, :].index_select(-2, keep)], -2),
                                requires_grad=table.requires_grad)

        self.det_tokens = nn.Parameter(self.det_tokens.index_select(1, keep),
                                       requires_grad=self.det_tokens.requires_grad)
        self.pos_embed = rows(self.pos_embed)
        if self.mid_pos_embed is not None:
            self.mid_pos_embed = rows(self.mid_pos_embed)
        self._pos_cache.clear()
        self.config = self.config.replace(num_det_tokens=len(indices))

    # ------------------------------------------------------- position embeddings
    def position_embeddings(self, grid: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
        """Initial ``[1, S, D]`` and mid ``[L-1, 1, S, D]`` (or None) embeddings for an input grid
        (ints; 0-dim tensors in a traced graph, which then resamples for any input size).

        Resampled on every call while training (they are learned). In inference (no grad) the
        result is cached per grid size, device and dtype. A cached entry keeps a copy of the
        embeddings it was resampled from and is served only while they are still equal: no
        version counter or pointer can say that reliably (fused AdamW updates in place without
        bumping ``_version``; ``load_state_dict`` copies into the same storage). The check is
        one comparison of the stored grid (~3% of the resample's cost for yolos-s).
        """
        mid = self.mid_pos_embed
        # not cached while learned, nor in a traced graph (whose grid is a tensor of the input's shape)
        cacheable = not (torch.is_grad_enabled() and self.pos_embed.requires_grad) and not (
            torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
        key = (tuple(grid), self.pos_embed.device, self.pos_embed.dtype)
        if cacheable and key in self._pos_cache:
            src_pe, src_mid, pe, mid_pe = self._pos_cache[key]
            # a CUDA graph being captured allows no host sync (torch.equal is one); its replays
            # are frozen to the embeddings of capture time anyway
            if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                return pe, mid_pe
            if torch.equal(src_pe, self.pos_embed) and (mid is None or torch.equal(src_mid, mid)):
                return pe, mid_pe
        src, t = self.config.grid_size, self.config.num_det_tokens
        pe = resample_pos_embed(self.pos_embed, src, grid, 1, t)
        mid_pe = None
        if mid is not None:
            n, _, s, d = mid.shape
            mid_pe = resample_pos_embed(mid.reshape(n, s, d), src, grid, 1, t).unsqueeze(1)
        if cacheable:
            if len(self._pos_cache) > 32:  # bound memory with many input sizes
                self._pos_cache.clear()
            with torch.no_grad():
                snapshot = (self.pos_embed.detach().clone(),
                            None if mid is None else mid.detach().clone())
            self._pos_cache[key] = (*snapshot, pe, mid_pe)
        return pe, mid_pe

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: Tensor,
        output_attentions: bool = False,
        output_det_features: bool = False,
        extra_tokens: Tensor | None = None,
        extra_mask: Tensor | None = None,
        output_patch_features: bool = False,
    ) -> dict[str, Tensor]:
        """Run the detector.

        Args:
            pixel_values: ``[B, 3, H, W]`` normalized images (see :func:`yolos.preprocess`).
            output_attentions: also return ``attentions``, the last layer's maps
                ``[B, heads, S, S]`` with ``S = 1 + (H//p)*(W//p) + T`` (slower explicit path).
            output_det_features: also return ``det_features`` ``[B, T, D]``, the [DET] outputs
                after the final LayerNorm (what the heads read).
            extra_tokens: training only (:mod:`yolos.train.extra_tokens`): ``[B, E, D]`` tokens
                appended after the [DET] tokens, position included; the heads read them too.
            extra_mask: with ``extra_tokens``, ``[S + E, S + E]`` or ``[B, S + E, S + E]``
                boolean, True where a token may attend to another, in every block; it must keep
                the [CLS], patch and [DET] tokens from seeing the extra ones (the caller's
                contract, tested in tests/test_extra_tokens.py). Mid position embeddings reach
                the first ``S`` tokens only.
            output_patch_features: training only (the dense auxiliary head of
                :mod:`yolos.train.extra_tokens`): also return ``patch_features [B, gh*gw, D]``,
                the patch tokens entering the last block, which its [DET] queries read (the last
                block computes no patch rows of its own).

        Returns:
            ``{"logits": [B, T, num_classes + 1], "pred_boxes": [B, T, 4]}``; boxes are
            normalized ``(cx, cy, w, h)`` in [0, 1] relative to the (padded) input. With
            ``extra_tokens`` also ``extra_logits [B, E, num_classes + 1]`` and ``extra_boxes
            [B, E, 4]``.
        """
        p = self.config.patch_size
        grid = (pixel_values.shape[-2] // p, pixel_values.shape[-1] // p)
        pos, mid = self.position_embeddings(grid)
        return self.forward_with_pos_embed(pixel_values, pos, mid, output_attentions, output_det_features,
                                           extra_tokens, extra_mask, output_patch_features)

    def forward_with_pos_embed(
        self,
        pixel_values: Tensor,
        pos: Tensor,
        mid: Tensor | None,
        output_attentions: bool = False,
        output_det_features: bool = False,
        extra_tokens: Tensor | None = None,
        extra_mask: Tensor | None = None,
        output_patch_features: bool = False,
    ) -> dict[str, Tensor]:
        """Forward with position embeddings already resampled to the input grid (export bakes
        them in as constants through this entry point)."""
        b = pixel_values.shape[0]
        x = self.patch_embed(pixel_values)  # [B, gh*gw, D]
        x = torch.cat(
            [self.cls_token.expand(b, -1, -1), x, self.det_tokens.expand(b, -1, -1)], dim=1
        )  # [B, S, D]
        x = x + pos
        e = 0 if extra_tokens is None else extra_tokens.shape[1]
        if e:
            x = torch.cat([x, extra_tokens.to(x.dtype)], dim=1)  # [B, S + E, D]
        attention = None
        last = len(self.blocks) - 1
        t = self.config.num_det_tokens
        patches = None
        for i, block in enumerate(self.blocks):
            if output_patch_features and i == last:
                patches = x[:, 1:x.shape[1] - t - e]  # [B, gh*gw, D]
            want_attn = output_attentions and i == last
            # Only the [DET] (and extra) outputs of the last block are read: let just those rows
            # attend and skip the MLP for the others (same numbers, ~1/12 less work). Full rows
            # when the last layer's attention maps are asked for.
            queries = t + e if i == last and not output_attentions else None
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x, _ = torch.utils.checkpoint.checkpoint(block, x, False, queries, extra_mask,
                                                         use_reentrant=False)
            else:
                x, attn = block(x, want_attn, queries, extra_mask)
                if want_attn:
                    attention = attn
            if mid is not None and i < last:
                x = x + (mid[i] if not e else torch.nn.functional.pad(mid[i], (0, 0, 0, e)))
        x = self.norm(x)
        det = x[:, -(t + e):]  # [B, T + E, D]
        logits, boxes = self.class_head(det), self.box_head(det).sigmoid()
        extra = {}
        if e:  # (no slicing otherwise: the inference and export graph is the one without extras)
            extra = {"extra_logits": logits[:, t:], "extra_boxes": boxes[:, t:]}
            logits, boxes, det = logits[:, :t], boxes[:, :t], det[:, :t]
        out = {"logits": logits, "pred_boxes": boxes, **extra}
        if output_attentions:
            out["attentions"] = attention
        if output_det_features:
            out["det_features"] = det
        if output_patch_features:
            out["patch_features"] = patches
        return out

    # ---------------------------------------------------------------- helpers
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
