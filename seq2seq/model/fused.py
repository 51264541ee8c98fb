"""Fused element-wise kernels of the recurrent cells and attention, forward and backward (C++ in fused_step.cpp).

Each (a step of an LSTM, GRU, SRU or QRNN cell, Bahdanau's score vᵀ tanh(k + q), and the forget-gate pooling of
an SRU or QRNN layer over a whole sequence, the label-smoothed cross-entropy of the output layer's logits, and a
decoding step's top k and log-normaliser) replaces several eager PyTorch kernels and their autograd nodes (for
the pooling, a loop over time of them) with one call each way; the matrix products stay in PyTorch. The C++ file
needs no torch headers: it is compiled at first use with the machine's C++ compiler (about a second, for this
CPU: -march=native) into a per-user cache, and loaded with ctypes.

The eager PyTorch path is the fallback, taken when no compiler is present, on a GPU, for int8 layers, or with
SEQ2SEQ_FUSED=0. Both give the same gradients (tests/test_fused.py); the fused tanh is a rational
approximation a few float ulp from torch's.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

SOURCE = Path(__file__).with_name("fused_step.cpp")
# the library's own environment variables (not service settings): where the build is kept, and an off switch
CACHE_VARIABLE, SWITCH_VARIABLE = "SEQ2SEQ_CACHE", "SEQ2SEQ_FUSED"
DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float64: 2}
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fPIC", "-shared", "-std=c++17"]

_int, _ptr = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES: dict[str, list[Any]] = {  # after the leading dtype code (c_int)
    **{f"s2s_{kind}_forward": [_int, _int] + [_ptr] * 5 for kind in ("lstm", "sru", "qrnn")},
    **{f"s2s_{kind}_backward": [_int, _int] + [_ptr] * 7 for kind in ("lstm", "sru", "qrnn")},
    "s2s_gru_forward": [_int, _int] + [_ptr] * 5,
    "s2s_gru_backward": [_int, _int] + [_ptr] * 6,
    "s2s_additive_score_forward": [_int] * 4 + [_ptr] * 4,
    "s2s_additive_score_backward": [_int] * 4 + [_ptr] * 7,
    "s2s_forget_pool_forward": [_int] * 3 + [_ptr] * 3 + [ctypes.c_int, _ptr],
    "s2s_forget_pool_backward": [_int] * 3 + [_ptr] * 4 + [ctypes.c_int] + [_ptr] * 3,
    "s2s_smoothed_ce_forward": [_int, _int, _ptr, _ptr, _int, ctypes.c_double, _ptr, _ptr],
    "s2s_smoothed_ce_backward": [_int, _int, _ptr, _ptr, _int, ctypes.c_double, _ptr, ctypes.c_double, _ptr],
    "s2s_top_k_log_norm": [_int] * 3 + [_ptr] * 4,
}


def cache_dir() -> Path:
    """Where the compiled library is kept: $SEQ2SEQ_CACHE, else $XDG_CACHE_HOME/seq2seq, else ~/.cache/seq2seq."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seq2seq"


def _cpu_signature() -> str:
    """The CPU's feature flags, so that a cache shared between machines never loads another CPU's -march=native."""
    try:
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")]
        return flags[0] if flags else ""
    except OSError:
        return ""


def _compile(target: Path) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise FileNotFoundError("no C++ compiler (g++ or $CXX)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # compile next to the target and rename: processes starting together (torchrun) never load a half-written file
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE)], check=True, capture_output=True)
        os.replace(built, target)


@functools.lru_cache(maxsize=None)
def library() -> Optional[ctypes.CDLL]:
    """The compiled kernels, built on first use; None where they cannot be (no compiler)."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_signature().encode()).hexdigest()
    target = cache_dir() / f"fused_step-{key[:16]}.so"
    try:
        if not target.exists():
            _compile(target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        print(f"seq2seq: fused decoder kernels unavailable ({error} {detail.decode(errors='replace')[:200]}); "
              "using the eager PyTorch path", file=sys.stderr)
        return None
    for name, argtypes in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = [ctypes.c_int, *argtypes], ctypes.c_int
    return lib


_enabled = os.environ.get(SWITCH_VARIABLE, "1") != "0"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """The eager PyTorch path inside the block (to compare the two in one process: tests, bench.fused)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def applies(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels take these tensors: all on the CPU in supported dtypes, enabled, library built."""
    return (_enabled and all(t.device.type == "cpu" and t.dtype in DTYPE_CODES for t in tensors)
            and library() is not None)


def _call(name: str, dtype: torch.dtype, sizes: tuple[int, ...],
          *arguments: Optional[torch.Tensor] | int | float) -> None:
    """The kernel `name` on these sizes; tensors are passed as pointers, plain numbers (flags, factors) as they are."""
    values = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in arguments]
    status = getattr(library(), name)(DTYPE_CODES[dtype], *sizes, *values)
    assert status == 0, f"{name}: unsupported dtype {dtype}"  # applies() admits only the three it knows


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class GatedCellFunction(torch.autograd.Function):
    """One step of an LSTM, SRU or QRNN layer (`kind`): gates (B, G·H) pre-activations, c (B, H) → h, c (B, H).
    Gate order: LSTM [i f o g], SRU [z f r x̂], QRNN [z f o] (fused_step.cpp gives each one's math)."""

    @staticmethod
    def forward(ctx: Any, gates: torch.Tensor, c_prev: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        gates, c_prev = gates.contiguous(), c_prev.contiguous()
        h, c = torch.empty_like(c_prev), torch.empty_like(c_prev)
        activated = torch.empty_like(gates) if ctx.needs_input_grad[0] or ctx.needs_input_grad[1] else None
        _call(f"s2s_{kind}_forward", gates.dtype, tuple(c_prev.shape), gates, c_prev, h, c, activated)
        ctx.kind = kind
        ctx.save_for_backward(activated, c_prev, c)
        return h, c

    @staticmethod
    def backward(ctx: Any, dh: torch.Tensor, dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        activated, c_prev, c = ctx.saved_tensors
        dgates, dc_prev = torch.empty_like(activated), torch.empty_like(c_prev)
        _call(f"s2s_{ctx.kind}_backward", activated.dtype, tuple(c_prev.shape), activated, c_prev, c,
              dh.to(c.dtype).contiguous(), dc.to(c.dtype).contiguous(), dgates, dc_prev)
        return dgates, dc_prev, None


class GRUCellFunction(torch.autograd.Function):
    """gates_in, hidden_gates (B, 3H) [r z n] projections of the input and of h, h (B, H) → new h (B, H)."""

    @staticmethod
    def forward(ctx: Any, gates_in: torch.Tensor, hidden_gates: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        gates_in, hidden_gates, h_prev = gates_in.contiguous(), hidden_gates.contiguous(), h_prev.contiguous()
        B, H = h_prev.shape
        h = torch.empty_like(h_prev)
        saved = h_prev.new_empty(B, 4 * H) if any(ctx.needs_input_grad) else None
        _call("s2s_gru_forward", h_prev.dtype, (B, H), gates_in, hidden_gates, h_prev, h, saved)
        ctx.save_for_backward(saved, h_prev)
        return h

    @staticmethod
    def backward(ctx: Any, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        saved, h_prev = ctx.saved_tensors
        B, H = h_prev.shape
        dgates_in, dhidden = h_prev.new_empty(B, 3 * H), h_prev.new_empty(B, 3 * H)
        dh_prev = torch.empty_like(h_prev)
        _call("s2s_gru_backward", h_prev.dtype, (B, H), saved, h_prev, dh.to(h_prev.dtype).contiguous(),
              dgates_in, dhidden, dh_prev)
        return dgates_in, dhidden, dh_prev


class AdditiveScoreFunction(torch.autograd.Function):
    """keys (B, S, A), query (B, K, A), v (A,) → scores (B, K, S) = Σ_a v_a tanh(keys + query)."""

    @staticmethod
    def forward(ctx: Any, keys: torch.Tensor, query: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        keys, query, v = keys.contiguous(), query.contiguous(), v.contiguous()
        (B, S, A), K = keys.shape, query.size(1)
        scores = keys.new_empty(B, K, S)
        _call("s2s_additive_score_forward", keys.dtype, (B, K, S, A), keys, query, v, scores)
        ctx.save_for_backward(keys, query, v)
        return scores

    @staticmethod
    def backward(ctx: Any, dscores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keys, query, v = ctx.saved_tensors
        (B, S, A), K = keys.shape, query.size(1)
        dkeys, dquery = torch.empty_like(keys), torch.empty_like(query)
        dv_partial = keys.new_empty(B, A, dtype=_accumulator(keys.dtype))
        _call("s2s_additive_score_backward", keys.dtype, (B, K, S, A), keys, query, v,
              dscores.to(keys.dtype).contiguous(), dkeys, dquery, dv_partial)
        return dkeys, dquery, dv_partial.sum(0).to(v.dtype)


class ForgetPoolFunction(torch.autograd.Function):
    """z, f (B, T, H) (f after its sigmoid), lengths (B,) int64 on the CPU → c (B, T, H), 0 on padding."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, f: torch.Tensor, lengths: torch.Tensor, reverse: bool) -> torch.Tensor:
        z, f = z.contiguous(), f.contiguous()
        c = torch.empty_like(z)
        _call("s2s_forget_pool_forward", z.dtype, tuple(z.shape), z, f, lengths, int(reverse), c)
        ctx.reverse = reverse
        ctx.save_for_backward(z, f, c, lengths)
        return c

    @staticmethod
    def backward(ctx: Any, dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        z, f, c, lengths = ctx.saved_tensors
        dz, df = torch.empty_like(z), torch.empty_like(z)
        _call("s2s_forget_pool_backward", z.dtype, tuple(z.shape), z, f, c, lengths, int(ctx.reverse),
              dc.to(z.dtype).contiguous(), dz, df)
        return dz, df, None, None


class SmoothedCrossEntropyFunction(torch.autograd.Function):
    """logits (N, V), targets (N,) int64 → the summed label-smoothed cross-entropy (float32, float64 for float64
    logits), rows whose target is `ignore_index` left out: F.cross_entropy(..., reduction="sum")'s value."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, smoothing: float,
                ignore_index: int) -> torch.Tensor:
        logits, targets = logits.contiguous(), targets.to(torch.int64).contiguous()
        (N, V), accumulator = logits.shape, _accumulator(logits.dtype)
        losses, lse = logits.new_empty(N, dtype=accumulator), logits.new_empty(N, dtype=accumulator)
        _call("s2s_smoothed_ce_forward", logits.dtype, (N, V), logits, targets, ignore_index, smoothing, losses, lse)
        ctx.smoothing, ctx.ignore_index = smoothing, ignore_index
        ctx.save_for_backward(logits, targets, lse)
        return losses.sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        logits, targets, lse = ctx.saved_tensors
        dlogits = torch.empty_like(logits)
        _call("s2s_smoothed_ce_backward", logits.dtype, tuple(logits.shape), logits, targets, ctx.ignore_index,
              ctx.smoothing, lse, float(grad), dlogits)
        return dlogits, None, None, None


def smoothed_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor, smoothing: float,
                               ignore_index: int) -> torch.Tensor:
    """Summed label-smoothed cross-entropy of logits (N, V) against targets (N,), computed in float whatever the
    logits' dtype (no float copy of them is made); the gradient comes back in the logits' dtype."""
    return SmoothedCrossEntropyFunction.apply(logits, targets, smoothing, ignore_index)


def top_k_log_norm(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's k best logits (best first, the lower id among equal ones), their ids and log Σ exp of the row:
    logits (N, V) → values (N, k) and log-normaliser (N, 1), in float (float64 for float64), ids (N, k) int64."""
    logits = logits.contiguous()
    (N, V), accumulator = logits.shape, _accumulator(logits.dtype)
    values, log_norm = logits.new_empty(N, k, dtype=accumulator), logits.new_empty(N, 1, dtype=accumulator)
    ids = logits.new_empty(N, k, dtype=torch.int64)
    _call("s2s_top_k_log_norm", logits.dtype, (N, V, k), logits, values, ids, log_norm)
    return values, ids, log_norm


def gated_cell(kind: str, gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM, SRU or QRNN step: gates (B, G·H) pre-activations, c (B, H) → h, c; in the dtype the two promote to."""
    dtype = torch.promote_types(gates.dtype, c.dtype)
    return GatedCellFunction.apply(gates.to(dtype), c.to(dtype), kind)


def gru_cell(gates_in: torch.Tensor, hidden_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """gates_in, hidden_gates (B, 3H) [r z n], h (B, H) → new h; in the dtype the three promote to."""
    dtype = torch.promote_types(torch.promote_types(gates_in.dtype, hidden_gates.dtype), h.dtype)
    return GRUCellFunction.apply(gates_in.to(dtype), hidden_gates.to(dtype), h.to(dtype))


def forget_pool(z: torch.Tensor, f: torch.Tensor, lengths: torch.Tensor, reverse: bool) -> torch.Tensor:
    """c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ z_t over each sequence's first lengths[b] steps (backwards if `reverse`)."""
    dtype = torch.promote_types(z.dtype, f.dtype)
    return ForgetPoolFunction.apply(z.to(dtype), f.to(dtype), lengths.to(torch.int64).contiguous(), reverse)


def additive_score(keys: torch.Tensor, query: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """keys (B, S, A), query (B, K, A), v (A,) → (B, K, S), in keys' dtype (autocast's, when it runs)."""
    return AdditiveScoreFunction.apply(keys, query.to(keys.dtype), v.to(keys.dtype))
