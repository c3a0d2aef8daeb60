"""Pre-LN ViT building blocks (timm ``Block`` layout, fused qkv, SDPA attention).

Every backbone matrix product goes through :func:`yolos.model.kernels.linear` with the weight
from :func:`~yolos.model.kernels.weight_of`, which is where the fast CPU paths and the
low-precision inference mode live.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .kernels import attention as attend
from .kernels import linear, weight_of


class PatchEmbed(nn.Module):
    """``[B, C, H, W] -> [B, (H // p) * (W // p), D]``, row-major; leftover pixels are dropped.

    Not a Linear, so the low-precision inference mode leaves it in fp32: rounding the pixels to
    bf16 was the largest single source of bf16 inference error (measured on the bundled model:
    detections at threshold 0.5 changed on 1.7% of images with it, 0.3% without), for ~3% of
    the FLOPs."""

    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (rows ordered q, k, v)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, return_attention: bool = False, num_queries: int | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x [B, S, D] -> (out [B, S, D], attention [B, heads, S, S] or None)``.

        With ``num_queries = n`` only the last ``n`` tokens attend (keys and values are still all
        ``S`` tokens) and ``out`` is ``[B, n, D]``: exactly those rows of the full result.
        ``mask``: ``[S, S]`` or ``[B, S, S]`` boolean, True where a query may see a key (training's
        extra tokens only); its last ``n`` rows with ``num_queries``.
        """
        b, s, d = x.shape
        if num_queries is None:
            qkv = linear(x, weight_of(self.qkv), self.qkv.bias).reshape(b, s, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, S, hd]
        else:
            # q only for the wanted rows (weight rows are ordered q | k | v)
            w, bias = weight_of(self.qkv), self.qkv.bias
            kv = linear(x, w[d:], bias[d:]).reshape(b, s, 2, self.num_heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
            s = num_queries
            q = linear(x[:, -s:], w[:d], bias[:d]).reshape(b, s, self.num_heads, self.head_dim)
            q = q.transpose(1, 2)  # [B, heads, n, hd]
        if mask is not None:
            mask = mask[..., -q.shape[2]:, :]
            mask = mask[:, None] if mask.ndim == 3 else mask  # [B, 1, S_q, S] over the heads
        if return_attention:
            # Explicit path (slow, memory O(S^2)) only when the maps are asked for;
            # softmax in fp32 as transformers' eager attention does.
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attention = scores.float().softmax(dim=-1).to(q.dtype)
            out = attention @ v
        else:
            attention = None
            out = attend(q, k, v, mask)
        out = out.transpose(1, 2).reshape(b, s, d)  # [B, S, D]
        return linear(out, weight_of(self.proj), self.proj.bias), attention


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = linear(x, weight_of(self.fc1), self.fc1.bias, gelu=True)
        return linear(h, weight_of(self.fc2), self.fc2.bias)


class Block(nn.Module):
    """``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))``; dropout and drop-path are 0 in YOLOS."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim)

    def forward(
        self, x: Tensor, return_attention: bool = False, num_queries: int | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x [B, S, D] -> [B, S, D]``, or ``[B, n, D]`` (the last ``n`` tokens' outputs, the
        rest is never computed) with ``num_queries = n``; the detector's last block needs only
        the [DET] outputs. ``mask``: see :class:`Attention`."""
        attn_out, attention = self.attn(self.norm1(x), return_attention, num_queries, mask)
        if num_queries is not None:
            x = x[:, -num_queries:]
        x = x + attn_out
        x = x + self.mlp(self.norm2(x))
        return x, attention


class HeadMLP(nn.Module):
    """DETR's prediction MLP: ``num_layers`` Linears with ReLU between them."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
