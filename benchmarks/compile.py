"""Does torch.compile speed up decoding on a CPU? Greedy decoding with and without a compiled decoder step.

    python -m benchmarks.compile configs/bench_bible.yaml runs/bench_bible/best.pt [--sentences 256]

Times `mtkit.search.decode` (greedy, the config's decode batch size) on the first test sentences
three times with the decoder's `step` as written, then compiles it (`torch.compile(...,
dynamic=True)`, every batch has its own length), reports the first call (compile included) and three
more, and the median speed-up. Not adopted: docs/kernels_and_runtime_figures.md has the figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from mtkit.checkpoint import load_checkpoint
from mtkit.config import load_config
from mtkit.errors import MtkitError
from mtkit.prepare import prepare
from mtkit.runs import resolve_checkpoint
from mtkit.search import decode


def main(argv: list[str] | None = None) -> int:
    """Print greedy decoding times with the decoder step as written and compiled; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("checkpoint", help="best, last (of the config's run_dir) or a path")
    parser.add_argument("--sentences", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        src = prepare(cfg).splits["test"].src_ids[: args.sentences]
        model = load_checkpoint(resolve_checkpoint(Path(cfg.run_dir), args.checkpoint), torch.device("cpu")).model
    except MtkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    settings = replace(cfg.decode, beam=1)

    def seconds() -> float:
        start = time.perf_counter()
        decode(model, src, settings)
        return time.perf_counter() - start

    plain = [seconds() for _ in range(3)]
    model.decoder.step = torch.compile(model.decoder.step, dynamic=True)
    first = seconds()
    compiled = [seconds() for _ in range(3)]
    print(f"greedy, {len(src)} sentences, {torch.get_num_threads()} threads")
    print(f"  as written: {' '.join(f'{s:.2f}' for s in plain)} s")
    print(f"  compiled:   first call {first:.1f} s (compiling included), then {' '.join(f'{s:.2f}' for s in compiled)} s")
    print(f"  speed-up after compiling: x{statistics.median(plain) / statistics.median(compiled):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
