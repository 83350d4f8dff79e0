"""Peak resident memory per phase of a benchmark.

Linux keeps a process's high-water mark (VmHWM) and lets the process reset it to its current
resident size, so each phase (translation, training) gets its own peak. Where that cannot be done
the figures fall back to the whole process's peak (getrusage).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from pathlib import Path


def _libc() -> ctypes.CDLL | None:
    """Return the C library where it can be loaded, else None."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name is not None else None
    except OSError:
        return None


def peak_rss_bytes() -> int:
    """Return the peak resident memory of this process (since the last `start_phase_peak`, on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def start_phase_peak() -> bool:
    """Start measuring the peak memory of a new phase; return False where this cannot be done.

    Freed heap memory goes back to the system first (malloc_trim), so that what an earlier
    phase left free is not counted; then Linux resets the process's high-water mark to its
    current resident size (`clear_refs` 5). `phase_peak_bytes` reads it.
    """
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except (OSError, AttributeError):
        return False


def phase_peak_bytes() -> int:
    """Return the peak resident memory since `start_phase_peak` (VmHWM), or of the whole process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()
