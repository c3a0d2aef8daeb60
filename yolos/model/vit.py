"""Pre-LN ViT building blocks (timm ``Block`` layout, fused qkv, SDPA attention).

CPU inference speed: on the CPUs we measured (AMD EPYC), PyTorch's fp32 ``F.linear`` goes to MKL,
which takes an AVX2 path on non-Intel CPUs, while oneDNN uses AVX-512 there and fuses the bias and
the GELU. :func:`linear` therefore calls oneDNN for fp32 CPU tensors (in training through a small
autograd function whose backward is two more oneDNN GEMMs); results are fp32 with another
summation order (differences ~1e-6). Set ``ONEDNN_LINEAR = False`` to turn it off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# fp32 CPU linears through oneDNN: True / False force it on / off; None (the default) decides by
# measurement (_onednn_measured): oneDNN only where it beat F.linear by ONEDNN_MARGIN, so the fast
# path is never slower than plain PyTorch on the CPU at hand. The verdict is kept per CPU and
# torch version in ~/.cache/yolos, so every later process (and every rank) takes the same path
# and gives bit-identical outputs.
ONEDNN_LINEAR: bool | None = None
ONEDNN_MARGIN = 1.15
_MEASURED: bool | None = None


def _onednn_ok() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_HAS_ONEDNN = _onednn_ok()


def _exporting() -> bool:
    """True while traced, scripted, compiled or exported: graphs get the portable ``F.linear``."""
    compiler = getattr(torch, "compiler", None)
    return (
        torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        or bool(compiler and getattr(compiler, "is_compiling", lambda: False)())
        or bool(compiler and getattr(compiler, "is_exporting", lambda: False)())
    )


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _mm(a: Tensor, b: Tensor, bias: Tensor | None = None, attr: str = "none") -> Tensor:
    """``a @ b.T (+ bias)`` through oneDNN; ``a [..., K]``, ``b [N, K]`` contiguous."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, attr, [], "none" if attr == "gelu" else "")


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with oneDNN GEMMs in forward and backward (fp32, CPU)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _mm(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0]).contiguous()  # [M, out]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm(g, weight.t().contiguous()).reshape(x.shape)  # g @ W
        if ctx.needs_input_grad[1]:
            gw = _mm(g.t().contiguous(), x.reshape(-1, x.shape[-1]).t().contiguous())  # g^T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


def _verdict_file():
    import os
    from pathlib import Path

    from ..hardware import cpu_features, cpu_name

    isa = "-".join(k for k, on in cpu_features().items() if on is True)
    key = "".join(c if c.isalnum() else "-" for c in f"{cpu_name()}-{isa}-torch{torch.__version__}")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yolos" / f"onednn-linear-{key}.txt"


def _onednn_measured(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Whether oneDNN beat ``F.linear`` by :data:`ONEDNN_MARGIN` on these shapes (up to 2048
    rows; medians of 5 alternating timings). Measured once per CPU and torch version: the verdict
    is read from, or written to, the cache file; without a writable cache, once per process."""
    global _MEASURED
    if _MEASURED is not None:
        return _MEASURED
    try:
        path = _verdict_file()
        if path.is_file():
            _MEASURED = path.read_text().strip() == "onednn"
            return _MEASURED
    except OSError:
        path = None
    import time

    with torch.no_grad():
        a = x.reshape(-1, x.shape[-1])[:2048].contiguous()
        times = {True: [], False: []}
        for _ in range(6):
            for fast in (True, False):
                t0 = time.perf_counter()
                _mm(a, weight, bias) if fast else F.linear(a, weight, bias)
                times[fast].append(time.perf_counter() - t0)
    median = {k: sorted(v[1:])[2] for k, v in times.items()}  # the first of each is a warm-up
    _MEASURED = median[True] * ONEDNN_MARGIN < median[False]
    if path is not None:
        try:
            from ..files import atomic_write_text

            atomic_write_text(path, "onednn\n" if _MEASURED else "torch\n")
        except OSError:
            pass
    return _MEASURED


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool = False) -> Tensor:
    """``F.linear`` (then exact erf-GELU when ``gelu``), through oneDNN for fp32 CPU tensors
    when :data:`ONEDNN_LINEAR` says so (by default: when it measured faster here)."""
    if (
        ONEDNN_LINEAR is not False and _HAS_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32
        and weight.dtype == torch.float32 and weight.is_contiguous()
        and not _cpu_autocast() and not _exporting()
        and (ONEDNN_LINEAR or _onednn_measured(x, weight, bias))
    ):
        x = x.contiguous()
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad)):
            out = _OneDNNLinear.apply(x, weight, bias)
            return F.gelu(out) if gelu else out
        return _mm(x, weight, bias, "gelu" if gelu else "none")
    out = F.linear(x, weight, bias)
    return F.gelu(out) if gelu else out


class PatchEmbed(nn.Module):
    """``[B, C, H, W] -> [B, (H // p) * (W // p), D]``, row-major; leftover pixels are dropped.

    In eval mode under autocast the stem stays in float32: rounding the pixels to bf16 was the
    largest single source of bf16 inference error (measured on the bundled model: detections at
    threshold 0.5 changed on 1.7% of images with it, 0.3% without), for ~3% of the FLOPs.
    Training under autocast is left as it is."""

    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.proj(x.float()).flatten(2).transpose(1, 2)
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
        self, x: Tensor, return_attention: bool = False, num_queries: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``x [B, S, D] -> (out [B, S, D], attention [B, heads, S, S] or None)``.

        With ``num_queries = n`` only the last ``n`` tokens attend (keys and values are still all
        ``S`` tokens) and ``out`` is ``[B, n, D]``: exactly those rows of the full result.
        """
        b, s, d = x.shape
        if num_queries is None:
            qkv = linear(x, self.qkv.weight, self.qkv.bias).reshape(b, s, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, S, hd]
        else:
            # q only for the wanted rows (weight rows are ordered q | k | v)
            w, bias = self.qkv.weight, self.qkv.bias
            kv = linear(x, w[d:], bias[d:]).reshape(b, s, 2, self.num_heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
            s = num_queries
            q = linear(x[:, -s:], w[:d], bias[:d]).reshape(b, s, self.num_heads, self.head_dim)
            q = q.transpose(1, 2)  # [B, heads, n, hd]
        if return_attention:
            # Explicit path (slow, memory O(S^2)) only when the maps are asked for;
            # softmax in fp32 as transformers' eager attention does.
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            attention = scores.float().softmax(dim=-1).to(q.dtype)
            out = attention @ v
        else:
            attention = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, s, d)  # [B, S, D]
        return linear(out, self.proj.weight, self.proj.bias), attention


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = linear(x, self.fc1.weight, self.fc1.bias, gelu=True)
        return linear(h, self.fc2.weight, self.fc2.bias)


class Block(nn.Module):
    """``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))``; dropout and drop-path are 0 in YOLOS."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim)

    def forward(
        self, x: Tensor, return_attention: bool = False, num_queries: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``x [B, S, D] -> [B, S, D]``, or ``[B, n, D]`` (the last ``n`` tokens' outputs, the
        rest is never computed) with ``num_queries = n``; the detector's last block needs only
        the [DET] outputs."""
        attn_out, attention = self.attn(self.norm1(x), return_attention, num_queries)
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
