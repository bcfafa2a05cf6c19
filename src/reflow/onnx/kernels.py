"""Small torch helpers for ONNX semantics that no single torch call has.

Every function here is named ``onnx_*``, uses only ``torch``, ``F`` (torch.nn.functional), ``math`` and
``contextlib`` (and ``ctypes``, imported in the body of the one function that needs it), and calls no other
reflow code: the
code generator copies the source of each helper a model uses into the generated module, so that module runs
with torch alone. Keep them short and obvious; they are read by users.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F


def onnx_ints(t: torch.Tensor | None) -> list[int] | None:
    """A 1-D int64 tensor (a shape, axes, starts, ...) as a Python list."""
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def onnx_reshape(x: torch.Tensor, shape: torch.Tensor, allowzero: int = 0) -> torch.Tensor:
    """ONNX Reshape: a 0 copies the input's size at that position (unless ``allowzero``), -1 is inferred."""
    dims = [int(v) for v in shape.tolist()]
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def onnx_flatten(x: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Flatten: a 2-D matrix whose rows are the dimensions before ``axis``."""
    axis = axis % x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), -1)


def onnx_same_pad(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    upper: bool,
    value: float = 0.0,
) -> torch.Tensor:
    """Pad ``x`` as ONNX auto_pad SAME_UPPER/SAME_LOWER does (output size = ceil(input / stride))."""
    pad: list[int] = []
    for i in reversed(range(len(kernel))):
        size = x.shape[2 + i]
        out = -(-size // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
        small, big = total // 2, total - total // 2
        pad += [small, big] if upper else [big, small]
    return F.pad(x, pad, value=value)


def onnx_max_pool(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[int, ...],
    dilations: tuple[int, ...],
    ceil_mode: int,
) -> torch.Tensor:
    """ONNX MaxPool with asymmetric pads (the light inception models pad only the end). When torch, padding
    the start on both sides, yields the ONNX output size with or without its ceil_mode, its windows are the
    ONNX ones clipped to the input, which for a max equals padding with -inf: no padded copy is made."""
    n = len(kernel)
    begin, end = pads[:n], pads[n:]
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True)]
    size = x.shape[2:]
    rounding = math.ceil if ceil_mode else math.floor
    want = [rounding((size[i] + begin[i] + end[i] - span[i]) / strides[i]) + 1 for i in range(n)]
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
    if all(2 * b <= k for b, k in zip(begin, kernel, strict=True)):
        for ceil in (False, True):
            got = []
            for i in range(n):
                extra = strides[i] - 1 if ceil else 0
                out = (size[i] + 2 * begin[i] - span[i] + extra) // strides[i] + 1
                got.append(out - 1 if ceil and (out - 1) * strides[i] >= size[i] + begin[i] else out)
            if got == want:
                return pool(x, kernel, strides, begin, dilations, ceil_mode=ceil)
    torch_pads = [p for i in reversed(range(n)) for p in (begin[i], end[i])]
    padded = F.pad(x, torch_pads, value=-math.inf)
    return pool(padded, kernel, strides, 0, dilations, ceil_mode=bool(ceil_mode))


def onnx_avg_pool(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[int, ...],
    ceil_mode: int,
    count_include_pad: int,
) -> torch.Tensor:
    """ONNX AveragePool with possibly asymmetric pads: pad explicitly, divide by the count of real cells."""
    n = len(kernel)
    torch_pads = [p for i in reversed(range(n)) for p in (pads[i], pads[i + n])]
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    total = pool(F.pad(x, torch_pads), kernel, strides, 0, bool(ceil_mode), True) * math.prod(kernel)
    if count_include_pad:
        ones = F.pad(torch.ones_like(x[:1, :1]), torch_pads, value=1.0)
    else:
        ones = F.pad(torch.ones_like(x[:1, :1]), torch_pads, value=0.0)
    count = pool(ones, kernel, strides, 0, bool(ceil_mode), True) * math.prod(kernel)
    return total / count


def onnx_window_max(x: torch.Tensor, radius: tuple[int, ...]) -> torch.Tensor:
    """MaxPool with stride 1 over a window of ``2 r + 1`` cells centred on each cell (padding ``r``) as a
    running max along one spatial dimension after another, each step a whole-tensor elementwise op. torch's
    max pooling takes about twice as long on such windows (it also tracks the indices it then drops): a 3x3
    max on 8x512x14x14 0.74 ms against 1.56 ms, onnxruntime 0.98 ms."""
    for axis, r in zip(range(x.dim() - 1, 1, -1), reversed(radius), strict=True):
        y, n = x.clone(), x.shape[axis]
        for d in range(1, min(r, n - 1) + 1):
            ahead, behind = y.narrow(axis, d, n - d), y.narrow(axis, 0, n - d)
            torch.maximum(ahead, x.narrow(axis, 0, n - d), out=ahead)
            torch.maximum(behind, x.narrow(axis, d, n - d), out=behind)
        x = y
    return x


def onnx_global_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """GlobalAveragePool / GlobalMaxPool over every spatial dimension, keeping them as size 1 (kind "avg" or
    "max")."""
    dims = tuple(range(2, x.dim()))
    if kind == "max":
        return x.amax(dim=dims, keepdim=True)
    return x.mean(dim=dims, keepdim=True)


def onnx_concat_start(channels: int, *parts: torch.Tensor) -> torch.Tensor:
    """The first concat of a chain along channels (graph_compiler.concat_chains): ``parts`` written into the
    leading channels of one channels-last buffer of ``channels`` channels, which the later concats of the
    chain fill (onnx_concat_grow); returns the view of the channels written so far."""
    first = parts[0]
    buf = torch.empty(
        (first.shape[0], channels, *first.shape[2:]), dtype=first.dtype, memory_format=torch.channels_last
    )
    return onnx_concat_grow(buf[:, :0], *parts)


def onnx_concat_grow(prefix: torch.Tensor, *parts: torch.Tensor) -> torch.Tensor:
    """``torch.cat((prefix, *parts), 1)`` where ``prefix`` views the leading channels of a concat buffer
    (onnx_concat_start): ``parts`` are written into the channels after it and the widened view returned, so
    each concat of a chain copies only what it adds (a dense block's k-th concat would copy all k inputs)."""
    start = prefix.shape[1]
    end = start + sum(p.shape[1] for p in parts)
    size = (prefix.shape[0], end, *prefix.shape[2:])
    view = prefix.as_strided(size, prefix.stride(), prefix.storage_offset())
    for p in parts:
        view[:, start : start + p.shape[1]] = p
        start += p.shape[1]
    return view


def onnx_softmax(x: torch.Tensor, axis: int, opset: int, kind: str) -> torch.Tensor:
    """Softmax/LogSoftmax/Hardmax; before opset 13 ONNX flattened everything from ``axis`` on."""
    if opset < 13:
        shape = x.shape
        x = onnx_flatten(x, axis)
        axis = 1
    if kind == "log":
        y = torch.log_softmax(x, dim=axis)
    elif kind == "hard":
        y = F.one_hot(x.argmax(dim=axis), x.shape[axis]).to(x.dtype).movedim(-1, axis)
    else:
        y = torch.softmax(x, dim=axis)
    return y.reshape(shape) if opset < 13 else y


def onnx_lrn(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    """ONNX LRN: divide by the (biased, scaled) sum of squares over a window of ``size`` channels.
    Summing shifted slices is several times faster than torch's local_response_norm (an avg_pool3d)."""
    c = x.shape[1]
    sq = F.pad(x * x, (0, 0) * (x.dim() - 2) + ((size - 1) // 2, size // 2))
    total = sq[:, 0:c]
    for i in range(1, size):
        total = total + sq[:, i : i + c]
    return x / (bias + alpha / size * total) ** beta


def onnx_channels_last(t: torch.Tensor) -> torch.Tensor:
    """4-D tensors in channels-last memory order: torch's CPU conv and pooling kernels are much faster on it.
    Only the memory layout changes, never a value or a shape."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t


def onnx_conv(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    z: torch.Tensor | None,
    strides: tuple[int, int],
    pads: tuple[int, int],
    dilations: tuple[int, int],
    groups: int,
    activation: str,
    scalars: tuple[float, ...] = (),
) -> torch.Tensor:
    """``activation(conv2d(x, w, b) + z)`` in one oneDNN call (``z`` optional; ``activation`` "none", "relu",
    "hardtanh" (a clamp to ``scalars``) or "swish" (SiLU); after a ``z`` only "relu").

    oneDNN applies the add and the activation while the output tile is still in cache, and takes ``w`` in its
    own blocked layout (see onnx_pack_conv_weight), so the weight is not reordered on every call."""
    if x.dtype == torch.float32 and x.dim() == 4 and onnx_has_onednn():
        conv = torch.ops.mkldnn._convolution_pointwise
        if z is None:
            y: torch.Tensor = conv(x, w, b, pads, strides, dilations, groups, activation, list(scalars), "")
        else:
            post = None if activation == "none" else activation
            y = conv(x, z, w, b, pads, strides, dilations, groups, "add", 1.0, post, [], "")
        return y
    y = F.conv2d(x, w, b, strides, pads, dilations, groups)
    y = y if z is None else y.add_(z)
    return onnx_activation_(y, activation, scalars)


def onnx_conv1x1(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    z: torch.Tensor | None,
    activation: str,
    scalars: tuple[float, ...] = (),
) -> torch.Tensor:
    """``activation(conv2d(x, w, b) + z)`` for a 1x1 convolution with stride 1, no padding and one group, as
    one matrix product over the pixels: on a channels-last ``x`` the (N, H, W, C) view is contiguous, so
    onnx_linear runs one GEMM without a copy, and its output viewed back is channels-last again. torch itself
    sends such a conv at batch 1 on one thread to its slow reference kernel (``w`` may be the 4-D conv weight
    or, prepacked, the matrix: see onnx_pack_linear_weight)."""
    w = w if w.dim() == 2 else w.flatten(1)
    nhwc = None if z is None else z.permute(0, 2, 3, 1)
    return onnx_linear(x.permute(0, 2, 3, 1), w, b, nhwc, activation, scalars).permute(0, 3, 1, 2)


def onnx_linear(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    z: torch.Tensor | None = None,
    activation: str = "none",
    scalars: tuple[float, ...] = (),
) -> torch.Tensor:
    """``activation(F.linear(x, w, b) + z)`` (``z`` optional; after a ``z`` only "relu") on oneDNN's matrix
    product, the add and activation applied while the output is in cache. ``F.linear`` calls MKL, whose
    float32 GEMM ran at half of oneDNN's speed on the AMD (Zen 5) CPU measured (vit_b_16's 1576x768x2304 on
    one thread: 52 vs 24 ms; onnxruntime 27 ms)."""
    if x.dtype == torch.float32 and w.dtype == torch.float32 and onnx_has_onednn():
        linear = torch.ops.mkldnn._linear_pointwise
        if z is None:
            algorithm = "none" if activation == "gelu" else ""  # GELU's exact (erf) form
            y: torch.Tensor = linear(x, w, b, activation, list(scalars), algorithm)
            return y
        y = linear.binary(x, z, w, b, "add")
    else:
        y = F.linear(x, w, b)
        y = y if z is None else y.add_(z)
    return onnx_activation_(y, activation, scalars)


def onnx_activation_(y: torch.Tensor, activation: str, scalars: tuple[float, ...] = ()) -> torch.Tensor:
    """A fused convolution's or dense layer's activation, applied in place to ``y`` (GELU, exact, is not)."""
    if activation == "relu":
        return y.relu_()
    if activation == "hardtanh":
        return y.clamp_(scalars[0], scalars[1])
    if activation == "swish":
        return F.silu(y, inplace=True)
    if activation == "gelu":
        return F.gelu(y)
    return y


def onnx_pack_conv_weight(
    w: torch.Tensor,
    pads: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    groups: int,
    input_shape: tuple[int, ...],
) -> torch.Tensor:
    """A float32 conv weight reordered once, at load, into the blocked layout oneDNN picks for this input
    shape (an opaque mkldnn tensor only onnx_conv reads); other weights are returned as they are."""
    if w.dtype != torch.float32 or w.dim() != 4 or not onnx_has_onednn():
        return w
    packed: torch.Tensor = torch.ops.mkldnn._reorder_convolution_weight(
        w.contiguous(), list(pads), list(strides), list(dilations), groups, list(input_shape)
    )
    return packed


def onnx_pack_linear_weight(w: torch.Tensor, input_shape: tuple[int, ...], channel_axis: int) -> torch.Tensor:
    """A float32 (out, in) matrix reordered once, at load, into the blocked layout oneDNN's matrix product
    picks for as many rows as ``input_shape`` has cells per channel (an opaque mkldnn tensor only
    onnx_linear reads; results stay bit-identical). The plain matrix is reordered on every call: packed,
    a (64, 256) x (256, 2048) product took 286 instead of 333 us on one thread, mobilenet_v2's 1x1
    convolutions at batch 1 on two threads 1.12 instead of 1.41 ms."""
    if w.dtype != torch.float32 or w.dim() != 2 or not onnx_has_onednn():
        return w
    rows = math.prod(input_shape) // input_shape[channel_axis]
    packed: torch.Tensor = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), rows)
    return packed


def onnx_has_onednn() -> bool:
    """Whether this torch build has oneDNN (mkldnn), whose fused convolution onnx_conv calls."""
    return bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def onnx_torch_threads(n: int) -> Iterator[None]:
    """``n`` torch intra-op threads on this thread inside the block, its own count again after it. Reading
    the count first also makes torch's lazy first initialisation of this thread's count, which would
    otherwise reset the count set here at the first parallel op. Setting a count costs no measurable time
    (benchmarks/onnx_threading.py)."""
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


def onnx_graph_compile(
    fn: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    w: dict[str, torch.Tensor],
    inputs: dict[str, torch.Tensor],
) -> Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``fn(w, inputs) -> outputs`` traced on ``inputs`` into one TorchScript graph with the weights ``w``
    frozen in, and handed to oneDNN Graph, which fuses each convolution or dense layer with the ops around it
    and keeps its blocked layout between them (see reflow.onnx.graph_compiler). The result takes the same
    arguments and runs without the GIL on inputs of the shapes of ``inputs`` (the graph holds them); on
    others it calls ``fn`` (with ``w``, which the graph itself does not read). ``fn`` itself comes back
    where torch has no oneDNN Graph, or tracing fails, or the graph's outputs differ from ``fn``'s by more
    than 1e-4 (relative), with a warning why. Call it on the thread, and with the torch thread count, that
    will run the result."""
    import warnings  # here, not at the top: the generated module copies this function's source alone

    names, keys = list(inputs), list(w)

    class Frozen(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i, k in enumerate(keys):
                self.register_buffer(f"w{i}", w[k])

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = fn(
                {k: getattr(self, f"w{i}") for i, k in enumerate(keys)}, dict(zip(names, xs, strict=True))
            )
            return tuple(out.values())

    xs = tuple(inputs.values())
    enabled = getattr(torch._C, "_jit_llga_enabled", None)
    if enabled is None or not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return fn
    before = enabled()
    try:
        torch.jit.enable_onednn_fusion(True)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape values it fixes: shapes are static
            graph = torch.jit.freeze(torch.jit.trace(Frozen().eval(), xs, check_trace=False))  # type: ignore[no-untyped-call]
            for _ in range(3):  # TorchScript profiles the first runs, then hands the graph to oneDNN Graph
                got = graph(*xs)
            want = fn(w, inputs)
    except Exception as e:  # any failure leaves the eager function, which is correct
        warnings.warn(
            f"onnx_graph_compile: running eagerly, tracing failed: {type(e).__name__}: {e}", stacklevel=2
        )
        return fn
    finally:
        torch.jit.enable_onednn_fusion(before)
    outputs = list(want)
    for k, a in zip(outputs, got, strict=True):
        b = want[k]
        scale = float(b.abs().max()) if b.is_floating_point() and b.numel() else 1.0
        if a.shape != b.shape or (b.numel() and float((a - b).abs().max()) > 1e-4 * max(scale, 1e-30)):
            warnings.warn(
                f"onnx_graph_compile: running eagerly, the compiled graph's {k!r} differs", stacklevel=2
            )
            return fn

    shapes = [x.shape for x in xs]

    def compiled(w: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = [inputs[k] for k in names]
        if [x.shape for x in xs] != shapes:  # the graph holds the shapes it was traced with
            return fn(w, inputs)
        return dict(zip(outputs, graph(*xs), strict=True))

    return compiled


def onnx_keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next call instead of handing it back to the system
    (process-wide; returns whether it could). By default a block of more than 32 MB is always a fresh
    mapping, and a smaller one after a trim, and the kernel zeroes every page on first touch: at batch 8 a
    1x1 convolution writing 38 MB took 18.8 ms instead of 4.1. onnxruntime's arena reuses its buffers the
    same way. Nothing is done with another C library."""
    import ctypes  # here, not at the top: the generated module copies this function's source alone

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no mallopt (not glibc), or no C library to load
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    # no block gets a mapping of its own; up to 1 GiB free at the heap's top stays there
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


def onnx_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ONNX Div: integer inputs divide with truncation."""
    if a.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def onnx_squeeze(x: torch.Tensor, axes: list[int] | None) -> torch.Tensor:
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes))


def onnx_unsqueeze(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


def onnx_slice(
    x: torch.Tensor, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None
) -> torch.Tensor:
    """ONNX Slice, negative steps included (torch slicing has none: flip, then slice forward)."""
    axes = list(range(len(starts))) if axes is None else [a % x.dim() for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        size = x.shape[axis]
        if step > 0:
            s = min(max(start + size if start < 0 else start, 0), size)
            e = min(max(end + size if end < 0 else end, 0), size)
            x = x.narrow(axis, s, max(e - s, 0))[(slice(None),) * axis + (slice(None, None, step),)]
        else:
            s = min(max(start + size if start < 0 else start, -1), size - 1)
            e = min(max(end + size if end < 0 else end, -1), size - 1)
            x = x.flip(axis).narrow(axis, size - 1 - s, max(s - e, 0))
            x = x[(slice(None),) * axis + (slice(None, None, -step),)]
    return x


def onnx_split(x: torch.Tensor, split: list[int] | None, axis: int, n_out: int) -> tuple[torch.Tensor, ...]:
    """ONNX Split: explicit sizes, or ``n_out`` parts as equal as possible (the last one smaller)."""
    if split is None:
        size = x.shape[axis]
        part = -(-size // n_out)
        split = [min(part, size - i * part) for i in range(n_out)]
    return tuple(torch.split(x, split, dim=axis))


def onnx_gather(x: torch.Tensor, idx: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Gather: take slices along ``axis`` at (possibly negative, any-shaped) indices."""
    axis = axis % x.dim()
    flat = x.index_select(axis, idx.reshape(-1).long() % x.shape[axis])
    return flat.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1 :]))


def onnx_expand(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """ONNX Expand broadcasts both ways (the target may be smaller than the input)."""
    target = [int(v) for v in shape.tolist()]
    rank = max(len(target), x.dim())
    have = [1] * (rank - x.dim()) + list(x.shape)
    want = [1] * (rank - len(target)) + target
    return x.expand([w if h == 1 else h for h, w in zip(have, want, strict=True)])


def onnx_pad(
    x: torch.Tensor, pads: list[int], value: float, mode: str, axes: list[int] | None
) -> torch.Tensor:
    """ONNX Pad (constant/reflect/edge); ``pads`` are all begins then all ends, over ``axes``."""
    axes = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
    n = len(axes)
    full = [0] * (2 * x.dim())
    for i, a in enumerate(axes):
        full[2 * (x.dim() - 1 - a)] = pads[i]
        full[2 * (x.dim() - 1 - a) + 1] = pads[i + n]
    if mode == "constant":
        return F.pad(x, full, value=value)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    lead = 0
    while full and full[-1] == 0 and full[-2] == 0 and x.dim() - lead > 1:
        full, lead = full[:-2], lead + 1
    shape = x.shape
    y = F.pad(x.reshape((1, -1, *shape[lead:])) if lead else x[None, None], full, mode=torch_mode)
    return y.reshape(tuple(shape[:lead]) + tuple(y.shape[2:])) if lead else y[0, 0]


def onnx_reduce(
    x: torch.Tensor, axes: list[int] | None, keepdims: int, kind: str, noop_with_empty_axes: int = 0
) -> torch.Tensor:
    """ONNX Reduce* over ``axes`` (all axes when none are given, unless ``noop_with_empty_axes``)."""
    if not axes:
        if noop_with_empty_axes:
            return x
        axes = list(range(x.dim()))
    dims = tuple(sorted(a % x.dim() for a in axes))
    if x.dim() == 0:
        dims = ()
    keep = bool(keepdims)
    if kind == "sum":
        return x.sum(dim=dims, keepdim=keep) if dims else x
    if kind == "mean":
        return x.mean(dim=dims, keepdim=keep)
    if kind == "max":
        return x.amax(dim=dims, keepdim=keep)
    if kind == "min":
        return x.amin(dim=dims, keepdim=keep)
    if kind == "prod":
        for d in reversed(dims):
            x = x.prod(dim=d, keepdim=keep)
        return x
    if kind == "l1":
        return x.abs().sum(dim=dims, keepdim=keep)
    if kind == "l2":
        return x.square().sum(dim=dims, keepdim=keep).sqrt()
    if kind == "sumsquare":
        return x.square().sum(dim=dims, keepdim=keep)
    if kind == "logsum":
        return x.sum(dim=dims, keepdim=keep).log()
    return torch.logsumexp(x, dim=dims, keepdim=keep)


def onnx_arg(x: torch.Tensor, axis: int, keepdims: int, select_last_index: int, kind: str) -> torch.Tensor:
    """ArgMax/ArgMin; ``select_last_index`` picks the last of equal extremes (search the flipped tensor)."""
    fn = torch.argmax if kind == "max" else torch.argmin
    if select_last_index:
        axis = axis % x.dim()
        return x.shape[axis] - 1 - fn(x.flip(axis), dim=axis, keepdim=bool(keepdims))
    return fn(x, dim=axis, keepdim=bool(keepdims))


def onnx_layer_norm(
    x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, axis: int, eps: float, n_out: int
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """ONNX LayerNormalization: normalize over dimensions ``axis..`` then scale and shift (broadcasting);
    with ``n_out`` 3 also the mean and the inverse standard deviation. Over the last dimension with a scale
    (and bias) per element, one F.layer_norm call (a fused kernel, ~5x faster than the five passes)."""
    d = x.shape[-1]
    last = axis in (-1, x.dim() - 1) and n_out == 1 and x.is_floating_point()
    if last and scale.numel() == d and (bias is None or bias.numel() == d):
        b = None if bias is None else bias.reshape(d)
        return F.layer_norm(x, (d,), scale.reshape(d), b, eps)
    dims = tuple(range(axis % x.dim(), x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt((x - mean).square().mean(dim=dims, keepdim=True) + eps)
    y = (x - mean) * inv_std * scale
    y = y if bias is None else y + bias
    return (y, mean, inv_std)[:n_out] if n_out > 1 else y


def onnx_cumsum(x: torch.Tensor, axis: torch.Tensor, exclusive: int, reverse: int) -> torch.Tensor:
    a = int(axis) % x.dim()
    y = x.flip(a) if reverse else x
    y = torch.cumsum(y, dim=a, dtype=x.dtype)
    if exclusive:
        y = y - (x.flip(a) if reverse else x)
    return y.flip(a) if reverse else y


def onnx_range(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    n = max(math.ceil((limit.item() - start.item()) / delta.item()), 0)
    return (start + torch.arange(n, dtype=torch.int64).to(start.dtype) * delta).to(start.dtype)


def onnx_isinf(x: torch.Tensor, detect_negative: int, detect_positive: int) -> torch.Tensor:
    return (torch.isneginf(x) & bool(detect_negative)) | (torch.isposinf(x) & bool(detect_positive))


def onnx_topk(
    x: torch.Tensor, k: torch.Tensor, axis: int, largest: int, sorted_: int
) -> tuple[torch.Tensor, ...]:
    values, indices = torch.topk(x, int(k.reshape(-1)[0]), dim=axis, largest=bool(largest), sorted=True)
    return values, indices


def onnx_mod(a: torch.Tensor, b: torch.Tensor, fmod: int) -> torch.Tensor:
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


def onnx_clip(
    x: torch.Tensor, lo: torch.Tensor | float | None, hi: torch.Tensor | float | None
) -> torch.Tensor:
    """ONNX Clip. A float tensor clamps to Python numbers: torch.clamp takes 0.36 ms where maximum/minimum
    with 0-d tensors took 1.21 ms (1x96x112x112, one thread)."""
    if x.is_floating_point() and (lo is not None or hi is not None):
        return x.clamp(None if lo is None else float(lo), None if hi is None else float(hi))
    if lo is not None:
        x = torch.maximum(x, torch.as_tensor(lo, dtype=x.dtype))
    if hi is not None:
        x = torch.minimum(x, torch.as_tensor(hi, dtype=x.dtype))
    return x
