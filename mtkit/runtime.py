"""The process settings the `mtkit` command runs with: OpenMP's spin and glibc malloc's thresholds.

Nothing here runs at import. `tune_process` applies every setting, one function each, and is called
by `mtkit.cli.main()` and by the benchmark (`python -m benchmarks`) alike, so that the benchmark
times what the command ships; a test or a notebook that imports mtkit keeps its own settings. An
environment that sets a variable of its own (OMP_WAIT_POLICY, GOMP_SPINCOUNT, MALLOC_*) wins.
What each setting was measured to give is in docs/kernels_and_runtime_figures.md.
"""

from __future__ import annotations

import ctypes
import os
import platform

SPIN_ROUNDS = "3000"  # GOMP_SPINCOUNT: how long an idle OpenMP thread spins before it sleeps
# glibc's malloc: tensors up to this size come from memory the process keeps, not fresh pages (mallopt)
KEEP_BELOW = 256 << 20  # M_MMAP_THRESHOLD
TRIM_ABOVE = 512 << 20  # M_TRIM_THRESHOLD: free memory the heap's top may hold before it goes back to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def wait_briefly(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """Let idle OpenMP threads spin a little, then sleep (GOMP_SPINCOUNT=3000), unless the environment says.

    Set before torch loads libgomp, which reads it once; OMP_WAIT_POLICY or GOMP_SPINCOUNT, when set, win.
    Sleeping at once costs every parallel region a wake-up; spinning without end steals a busy machine's
    other core; a short spin is the compromise.
    """
    if "OMP_WAIT_POLICY" not in environ:
        environ.setdefault("GOMP_SPINCOUNT", SPIN_ROUNDS)


def keep_freed_memory(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Let glibc's malloc reuse freed tensor memory instead of returning it to the system; return whether it took.

    By default glibc maps every large block afresh and unmaps it when freed (its threshold adapts up to
    32 MB), so each training step faults in its large buffers page by page, zeroed by the kernel. With
    blocks up to KEEP_BELOW kept in the heap, the next step reuses them. The PyTorch CPU tuning guide gets
    the same with jemalloc or tcmalloc through LD_PRELOAD. Nothing happens where the environment sets
    malloc's own variables, or off glibc.
    """
    if "MALLOC_MMAP_THRESHOLD_" in environ or "malloc" in environ.get("GLIBC_TUNABLES", ""):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_ABOVE))


def tune_process(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str | bool | None]:
    """Apply the runtime settings the `mtkit` command runs with; return what is in force, for a record.

    OpenMP's spin first (before torch loads libgomp), then malloc's thresholds.
    """
    wait_briefly(environ)
    return {"GOMP_SPINCOUNT": environ.get("GOMP_SPINCOUNT"), "OMP_WAIT_POLICY": environ.get("OMP_WAIT_POLICY"),
            "malloc_keeps_freed": keep_freed_memory(environ)}
