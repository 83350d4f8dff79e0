"""The C loops of `native.c`, built once per machine into a per-user cache and called through ctypes.

`load()` returns the compiled library, or None where it cannot be had: no C compiler (cc, gcc, or
the one $CC names), a compiler error, or a platform other than Linux; it then says so in one log
line, and the fused kernels run the same equations in torch ops (`usable` is False). Nothing but
speed depends on it.

The library is built with `FLAGS` below, into $MTKIT_CACHE/kernels, else $XDG_CACHE_HOME/mtkit/kernels,
else ~/.cache/mtkit/kernels, under a name made from the source, the compiler's version, the flags
and this CPU's features: a changed source, compiler or machine gets a build of its own, and an
unchanged one is never rebuilt. A build logs one line. It is written to a temporary name and
renamed, so two trainings starting at once cannot read a half-written file.

Only float32 tensors on the CPU, contiguous (for `dropout`, rows whose last dimension is), go to
it (`usable`). Each call splits its rows over torch's thread count (`torch.get_num_threads()`).
The library links libgomp.so.1, the soname torch's own OpenMP runtime has, so the process keeps
one runtime and one set of warm threads. Every element is computed by one thread in a fixed order:
the results are the same bits for any thread count (tested).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
# No -ffast-math: its -ffinite-math-only lets the compiler assume that no NaN or infinity occurs (it folds
# x * 0 to 0, for one), so a NaN in training could vanish instead of stopping the run. What is kept of it
# neither hides nor makes a NaN or an infinity: sums may be reassociated, so that they vectorise
# (-fassociative-math, which needs the next three), a division may become a multiplication by the inverse
# (-freciprocal-math), the sign of a zero may be lost (-fno-signed-zeros), and no errno or FP traps are kept
# for math calls (-fno-math-errno, -fno-trapping-math). tanhf and expf vectorise through glibc's libmvec
# by declarations in native.c (-ffast-math used to switch them on); libmvec handles NaN and infinities.
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno", "-fno-trapping-math",
         "-fno-signed-zeros", "-fassociative-math", "-freciprocal-math", "-shared", "-fPIC")
PARALLEL = ("-fopenmp",)  # tried first; without it the pragmas are ignored and each call runs on one thread
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
SIGNATURES = {  # every function takes the thread count first
    "mtk_additive_forward": [_I64] * 6 + [_PTR] * 7,
    "mtk_additive_backward": [_I64] * 6 + [_PTR] * 12,
    "mtk_gru_forward": [_I64] * 3 + [_PTR] * 7,
    "mtk_gru_backward": [_I64] * 3 + [_PTR] * 8,
    "mtk_cross_entropy_rows": [_I64] * 3 + [_PTR] * 3 + [ctypes.c_float, _I64, _PTR, _PTR],
    "mtk_dropout": [_I64] * 4 + [ctypes.c_float, _I64, _PTR, _I64, _I64, _PTR, _I64, _I64],
}


def _cpu_features() -> str:
    """Return this CPU's feature flags (Linux), which -march=native compiles for."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    """Return the directory the library is built into: $MTKIT_CACHE/kernels, $XDG_CACHE_HOME/mtkit/kernels or
    ~/.cache/mtkit/kernels."""
    if os.environ.get("MTKIT_CACHE"):
        return Path(os.environ["MTKIT_CACHE"]) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mtkit" / "kernels"


def _libraries() -> tuple[str, ...]:
    """Return what the library links: libm, and glibc's vector maths on x86-64 (native.c declares its tanhf, expf)."""
    if platform.machine() == "x86_64" and platform.libc_ver()[0] == "glibc":
        return ("-lm", "-lmvec")
    return ("-lm",)


def find_compiler() -> str | None:
    """Return the C compiler to build with: $CC when set (None if it is not there), else cc or gcc on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return shutil.which("cc") or shutil.which("gcc")


def _build(compiler: str) -> Path:
    """Return the path of the compiled library, built with OpenMP where that builds, else without."""
    try:
        return build(compiler, FLAGS + PARALLEL)
    except subprocess.CalledProcessError as err:
        log.info("native.c does not build with -fopenmp (%s); its loops run on one thread", err.stderr.strip()[:200])
        return build(compiler, FLAGS)


def build(compiler: str, flags: tuple[str, ...], directory: Path | None = None) -> Path:
    """Return the path of the library built with `flags`, compiling it first if the cache has no such build yet."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    libraries = _libraries()
    key = hashlib.sha256("\n".join([SOURCE.read_text(), version, " ".join(flags + libraries),
                                    _cpu_features()]).encode())
    target = (directory or cache_dir()) / f"libmtkit_kernels_{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        subprocess.run([compiler, *flags, "-o", str(built), str(SOURCE), *libraries], capture_output=True,
                       text=True, check=True)
        os.replace(built, target)
    log.info("built mtkit's C kernels (%s) into %s", compiler, target)
    return target


def open_library(path: Path) -> ctypes.CDLL:
    """Return the library at path with every function's argument types set."""
    lib = ctypes.CDLL(str(path))
    for name, argtypes in SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib


@cache
def load() -> ctypes.CDLL | None:
    """Return the compiled `native.c`, or None (with one log line saying why) where it cannot be built."""
    if platform.system() != "Linux":
        log.info("mtkit's C kernels are built on Linux only: the fused kernels run their loops in torch ops")
        return None
    compiler = find_compiler()
    if compiler is None:
        named = f" (CC={os.environ['CC']})" if os.environ.get("CC") else ""
        log.warning("no C compiler found%s: the fused kernels run their loops in torch ops and dropout is torch's "
                    "(same numbers, slower)", named)
        return None
    try:
        return open_library(_build(compiler))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = (getattr(err, "stderr", "") or str(err)).strip().replace("\n", " ")
        log.warning("could not build mtkit/kernels/native.c (%s): the fused kernels run their loops in torch ops",
                    detail[:300])
        return None


def usable(*tensors: Tensor) -> bool:
    """Whether the compiled loops can take these tensors: float32 on the CPU, and the library builds."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and load() is not None


def _threads() -> int:
    return torch.get_num_threads()


def _ptr(t: Tensor | None) -> int | None:
    if t is None:
        return None
    assert t.is_contiguous(), "native loops read contiguous tensors"
    return t.data_ptr()


def additive_forward(q: Tensor, keys: Tensor, v: Tensor, mask: Tensor, states: Tensor,
                     alpha: Tensor, context: Tensor) -> None:
    """Write additive attention's alpha (N, S) and context (N, K) for queries q (N, A), N = G·B, in place.

    keys (B, S, A), v (A,), mask (B, S) bool (True on real tokens), states (B, S, K).
    """
    batch, src, dim = keys.shape
    load().mtk_additive_forward(_threads(), batch, q.size(0) // batch, src, dim, states.size(2), _ptr(q), _ptr(keys), _ptr(v),
                                _ptr(mask), _ptr(states), _ptr(alpha), _ptr(context))


def additive_backward(q: Tensor, keys: Tensor, v: Tensor, mask: Tensor, states: Tensor, alpha: Tensor,
                      d_context: Tensor, d_alpha: Tensor | None, d_q: Tensor, d_v_rows: Tensor, de_sum: Tensor,
                      de_tanh2: Tensor) -> None:
    """One step of additive attention's backward (see native.c): writes d_q; adds to d_v_rows (N, A), v's
    gradient by query row, and to de_sum, de_tanh2."""
    batch, src, dim = keys.shape
    load().mtk_additive_backward(_threads(), batch, q.size(0) // batch, src, dim, states.size(2), _ptr(q), _ptr(keys),
                                 _ptr(v), _ptr(mask), _ptr(states), _ptr(alpha), _ptr(d_context), _ptr(d_alpha),
                                 _ptr(d_q), _ptr(d_v_rows), _ptr(de_sum), _ptr(de_tanh2))


def gru_forward(gi: Tensor, gh: Tensor, s_prev: Tensor, rz: Tensor, n: Tensor, ghn: Tensor, s: Tensor) -> None:
    """Write torch's GRU cell from gate pre-activations gi, gh (N, 3H): rz (N, 2H), n, gh_n and s (N, H)."""
    load().mtk_gru_forward(_threads(), s_prev.size(0), s_prev.size(1), _ptr(gi), _ptr(gh), _ptr(s_prev), _ptr(rz), _ptr(n),
                           _ptr(ghn), _ptr(s))


def gru_backward(d_s: Tensor, s_prev: Tensor, rz: Tensor, n: Tensor, ghn: Tensor, d_gi: Tensor, d_gh: Tensor,
                 d_prev: Tensor) -> None:
    """Write the GRU cell's backward: d_gi, d_gh (N, 3H) and d_prev = d_s ⊙ z (N, H)."""
    load().mtk_gru_backward(_threads(), d_s.size(0), d_s.size(1), _ptr(d_s), _ptr(s_prev), _ptr(rz), _ptr(n), _ptr(ghn),
                            _ptr(d_gi), _ptr(d_gh), _ptr(d_prev))


def cross_entropy_rows(logits: Tensor, bias: Tensor, target: Tensor, smoothing: float, nll: Tensor,
                       grad_b: Tensor | None) -> None:
    """Add bias to logits (C, V) and write each row's (smoothed) cross-entropy against target (C,) into nll (C,).

    With grad_b (V,), also turn each row into its logits' gradient and add the rows' sum to grad_b (see native.c).
    """
    rows, vocab = logits.shape
    load().mtk_cross_entropy_rows(_threads(), rows, vocab, _ptr(logits), _ptr(bias), _ptr(target), smoothing,
                                  int(grad_b is not None), _ptr(nll), _ptr(grad_b))


def dropout(x: Tensor, p: float, seed: int, out: Tensor) -> None:
    """Write x with each element zeroed with probability p, else scaled by 1 / (1 − p), into out (x's shape).

    The mask is a function of seed and each element's place in x's logical order alone (native.c's
    counter-based hash), not of memory layout or thread count: the same seed makes the same mask again.
    x and out have up to 3 dimensions, the last one contiguous (`dropout_layout`).
    """
    r1, r2, d, x1, x2 = dropout_layout(x)
    _, _, _, o1, o2 = dropout_layout(out)
    load().mtk_dropout(_threads(), r1, r2, d, p, seed, x.data_ptr(), x1, x2, out.data_ptr(), o1, o2)


def dropout_layout(t: Tensor) -> tuple[int, int, int, int, int]:
    """Return t as (R1, R2, D) rows with row strides (s1, s2), the last dimension contiguous; raise ValueError else."""
    if t.dim() == 0 or t.dim() > 3 or t.stride(-1) != 1:
        raise ValueError(f"native dropout takes 1 to 3 dimensions, the last contiguous; got {tuple(t.shape)}")
    sizes, strides = [1, 1, *t.shape][-3:], [0, 0, *t.stride()][-3:]
    return sizes[0], sizes[1], sizes[2], strides[0], strides[1]
