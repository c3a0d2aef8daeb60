"""The backbone's matrix products: one ``linear`` that picks the fastest exact path for the tensors
at hand, and the low-precision inference mode.

fp32 on CPU: PyTorch's ``F.linear`` goes to MKL, which takes an AVX2 path on non-Intel CPUs,
while oneDNN uses AVX-512 there and fuses the bias and the GELU. :func:`linear` therefore calls
oneDNN for fp32 CPU tensors where it measured faster on the running CPU (in training through a
small autograd function whose backward is two more oneDNN GEMMs); results are fp32 with another
summation order (differences ~1e-6). On the Intel Xeon with AMX this project runs on, F.linear
won the measurement, so it is used there.

Low precision (:class:`LowPrecision`, what ``dtype="bfloat16"`` and ``dtype="int8"`` run): the
backbone's Linear weights are cast once to bf16 (or quantized once to int8, :class:`Int8Linear`)
and, inside :func:`low_precision`, every backbone matrix product runs in that precision: bf16
through oneDNN with the bias and the GELU fused (the attention then reads bf16 q/k/v), int8
through PyTorch's dynamic int8 GEMM with fp32 outputs. The residual stream, the
LayerNorms, the patch stem, the heads and any Linear left out of the snapshot (the last block, in
``yolos.inference.predictor.precision_for``) stay fp32: each pass casts only activations, and
the numbers stay close to fp32 (README, Benchmarks: bf16 fidelity).
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings

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
    from ..hardware import cache_dir, machine_key

    version = "".join(c if c.isalnum() else "-" for c in torch.__version__)
    return cache_dir() / f"onednn-linear-{machine_key()}-torch{version}.txt"


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
    """``F.linear`` (then exact erf-GELU when ``gelu``). A bf16/fp16 weight (a low-precision
    copy from :func:`weight_of`, or a model cast as a whole) computes in that dtype with the bias
    and GELU fused, when no gradient is needed; fp32 CPU tensors go through oneDNN when
    :data:`ONEDNN_LINEAR` says so (by default: when it measured faster here)."""
    if isinstance(weight, Int8Linear):  # the int8 mode's packed weight carries its bias
        out = weight(x)
        return F.gelu(out) if gelu else out
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))
    autocast = _cpu_autocast()
    if weight.dtype in (torch.bfloat16, torch.float16) and not needs_grad and not autocast:
        return _linear_low(x, weight, bias, gelu)
    if x.dtype != weight.dtype and not autocast:
        x = x.to(weight.dtype)  # a low-precision activation into a full-precision layer
    if (
        ONEDNN_LINEAR is not False and _HAS_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32
        and weight.dtype == torch.float32 and weight.is_contiguous()
        and not autocast and not _exporting()
        and (ONEDNN_LINEAR or _onednn_measured(x, weight, bias))
    ):
        x = x.contiguous()
        if needs_grad:
            out = _OneDNNLinear.apply(x, weight, bias)
            return F.gelu(out) if gelu else out
        return _mm(x, weight, bias, "gelu" if gelu else "none")
    out = F.linear(x, weight, bias)
    return F.gelu(out) if gelu else out


# ----------------------------------------------------------------------------- attention
# bf16 attention on CPU: PyTorch's fused SDPA kernel is fast where AMX runs its tile products; on
# other CPUs transformers' eager bf16 attention (two bf16 matmuls, softmax in fp32) has beaten it.
# Which wins depends on the CPU and on the model's shapes, and a kernel-level timing misleads (the
# eager path's S x S temporaries cost page faults a microbenchmark does not see), so the choice is
# made by timing the model itself once per machine (settle_bf16_attention, called by the bf16
# mode) and kept like the linear's verdict. True / False force it.
EAGER_BF16_ATTENTION: bool | None = None
_EAGER_MEASURED: bool | None = None


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``[B, heads, S, d]`` tensors: SDPA, or in bf16 on the
    CPU the eager products where they were measured faster (:func:`settle_bf16_attention`).

    ``mask``: boolean, True where a query may attend to a key, broadcast to ``[B, heads, S_q,
    S_k]``; only training's extra tokens use it (:mod:`yolos.train.extra_tokens`), so it always
    takes SDPA and inference and export never see it."""
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    eager = EAGER_BF16_ATTENTION if EAGER_BF16_ATTENTION is not None else bool(_EAGER_MEASURED)
    if eager and q.dtype == torch.bfloat16 and q.device.type == "cpu" and not _exporting() \
            and not torch.is_grad_enabled():
        return _eager(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def _eager(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v


def settle_bf16_attention(forward) -> bool:
    """Whether bf16 attention runs eager here: :data:`EAGER_BF16_ATTENTION` when set, else the
    verdict kept for this CPU and torch version, else measured now by timing ``forward()`` (one
    inference pass of the model in its bf16 mode) three times with each path, alternating; eager
    only where its best time beats SDPA's by :data:`ONEDNN_MARGIN`."""
    global _EAGER_MEASURED
    if EAGER_BF16_ATTENTION is not None:
        return EAGER_BF16_ATTENTION
    if _EAGER_MEASURED is not None:
        return _EAGER_MEASURED
    path = _verdict_file().with_name(_verdict_file().name.replace("onednn-linear", "bf16-attention"))
    try:
        if path.is_file():
            _EAGER_MEASURED = path.read_text().strip() == "eager"
            return _EAGER_MEASURED
    except OSError:
        pass
    import time

    times = {True: [], False: []}
    for _ in range(3):
        for eager in (True, False):
            _EAGER_MEASURED = eager
            t0 = time.perf_counter()
            forward()
            times[eager].append(time.perf_counter() - t0)
    _EAGER_MEASURED = min(times[True]) * ONEDNN_MARGIN < min(times[False])
    try:
        from ..files import atomic_write_text

        atomic_write_text(path, "eager\n" if _EAGER_MEASURED else "sdpa\n")
    except OSError:
        pass
    return _EAGER_MEASURED


# ----------------------------------------------------------------------------- low precision
class Int8Linear:
    """A Linear's weight quantized once to int8, per output channel (symmetric), with its fp32
    bias, for PyTorch's dynamic int8 GEMM (``quantized::linear_dynamic``): each call quantizes
    the activations per tensor to 8 bits, multiplies in int8 with int32 sums (VNNI / AMX-INT8 where
    the CPU has them, through the x86 quantized engine) and returns fp32. ``reduce_range``
    (7-bit activations) only where the CPU lacks VNNI, whose int8 dot product cannot saturate."""

    def __init__(self, layer: nn.Linear):
        from ..hardware import cpu_features

        w = layer.weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # torch 2.10+ calls quantized tensors deprecated (NOTES.md)
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch.quantize_per_channel(w, scales, torch.zeros(len(w), dtype=torch.int64), 0, torch.qint8)
        bias = None if layer.bias is None else layer.bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack(qweight, bias)
        f = cpu_features()
        self.reduce_range = not (f["vnni"] or f["amx_int8"])

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self.packed, self.reduce_range)


class LowPrecision:
    """Copies in ``dtype`` of the weights of every Linear inside ``module``, made once (the
    backbone's: ``LowPrecision(model.blocks, torch.bfloat16)``): bfloat16 or float16 tensors, or
    ``torch.qint8``: :class:`Int8Linear` (int8 GEMMs with dynamically quantized activations).

    A snapshot: later changes to the model's weights are not seen, so make one per use (a
    ``predict`` call makes one per call; a server, whose model never trains, one at start)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        if dtype not in (torch.bfloat16, torch.float16, torch.qint8):
            raise ValueError(f"dtype: low precision is bfloat16, float16 or int8, got {dtype}")
        self.dtype = dtype
        with torch.no_grad():  # keyed by the layer itself
            self.weights = {m: Int8Linear(m) if dtype == torch.qint8 else m.weight.detach().to(dtype).contiguous()
                            for m in module.modules() if isinstance(m, nn.Linear)}


_ACTIVE: contextvars.ContextVar[LowPrecision | None] = contextvars.ContextVar("yolos_low_precision", default=None)


@contextlib.contextmanager
def low_precision(weights: LowPrecision):
    """Run the Linears that ``weights`` holds in its dtype, in this thread or task, while
    gradients are off (with gradients on, the fp32 weights are used as always)."""
    token = _ACTIVE.set(weights)
    try:
        yield weights
    finally:
        _ACTIVE.reset(token)


def weight_of(layer: nn.Linear) -> Tensor | Int8Linear:
    """The weight a forward pass uses for ``layer``: its low-precision copy (a tensor, or an
    :class:`Int8Linear`) inside :func:`low_precision` (gradients off), else ``layer.weight``."""
    active = _ACTIVE.get()
    if active is not None and not torch.is_grad_enabled():
        cast = active.weights.get(layer)
        if cast is not None:
            return cast
    return layer.weight


_LOW_ONEDNN: dict[torch.dtype, bool] = {}


def _onednn_runs(dtype: torch.dtype) -> bool:
    """Whether oneDNN has a ``dtype`` inner product on this CPU. Its bf16 kernels need AVX-512
    (an AVX2-only CPU such as many AMD EPYCs refuses to build the primitive), so one tiny product
    with the real arguments (fp32 bias, fused GELU) is tried once per process."""
    if dtype not in _LOW_ONEDNN:
        try:
            a, b = torch.ones(2, 16, dtype=dtype), torch.ones(8, 16, dtype=dtype)
            _mm(a, b, torch.zeros(8), "gelu")
            _LOW_ONEDNN[dtype] = True
        except RuntimeError:
            _LOW_ONEDNN[dtype] = False
    return _LOW_ONEDNN[dtype]


def _linear_low(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool) -> Tensor:
    """``x @ weight.T + bias`` (then GELU) in ``weight.dtype``; the bias stays in its own dtype
    (fp32: added to the fp32 accumulator on the oneDNN path). Where oneDNN has no kernel for the
    dtype, PyTorch's own (slower) GEMM runs it with the bias cast to the dtype."""
    x = x.to(weight.dtype)
    if (_HAS_ONEDNN and x.device.type == "cpu" and weight.is_contiguous() and not _exporting()
            and _onednn_runs(weight.dtype)):
        return _mm(x.contiguous(), weight, bias, "gelu" if gelu else "none")
    out = F.linear(x, weight, None if bias is None else bias.to(weight.dtype))
    return F.gelu(out) if gelu else out
