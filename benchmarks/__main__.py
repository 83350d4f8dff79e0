"""Benchmark a config's model: training and translation speed, peak memory, utilisation.

    python -m benchmarks configs/bench_bible.yaml --json results/bench.json
    python -m benchmarks configs/bench_bible.yaml --checkpoint runs/bench_bible/best.pt --levers
    python -m benchmarks configs/bench_bible.yaml --sentences 0 --steps 0 --attention-cost docs/attention_cost.png

Parses options, sets threads, and calls `benchmarks.run.run_bench`; see that module for what is
measured and `benchmarks.flops` for how FLOPs are counted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    """Return the command line's options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="experiment YAML (its data is prepared when needed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.decoder=bahdanau (repeatable)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps (0 skips training)")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--window", type=int, default=5, help="steps per timed window; the median window counts")
    p.add_argument("--sentences", type=int, default=1500, help="test sentences to translate (0 skips)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="beam sizes to translate with")
    p.add_argument("--checkpoint", help="trained weights to use: best, last (of the config's run_dir) or a path "
                                        "(default: random weights)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    p.add_argument("--attention-cost", type=Path, metavar="PNG",
                   help="also time decoding/training against source and target length, with and "
                        "without attention, and draw the figure to PNG")
    p.add_argument("--attention-lengths", type=int, nargs="+", default=[10, 40, 80, 120, 160])
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also run N training steps under the PyTorch profiler and list where the time goes")
    p.add_argument("--levers", action="store_true", help="also time each speed lever against its alternative")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n×n products that measure the peak")
    p.add_argument("--json", type=Path, help="write the full result as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the options ask for; print its table; return the exit status (2: a bad option)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    # exactly what the mtkit command ships, before torch loads (OMP_WAIT_POLICY=PASSIVE or
    # MALLOC_MMAP_THRESHOLD_=131072 in the environment to time without one of them)
    from mtkit.runtime import tune_process

    runtime = tune_process()
    from mtkit.config import load_config
    from mtkit.device import set_threads
    from mtkit.errors import MtkitError

    from benchmarks.report import format_table, write_json
    from benchmarks.run import Settings, run_bench

    set_threads(args.threads)
    try:
        if args.steps and args.steps < args.window:
            raise MtkitError(f"--steps ({args.steps}) must be at least --window ({args.window})")
        settings = Settings(steps=args.steps, warmup=args.warmup if args.steps else 0, window=args.window,
                            sentences=args.sentences, beams=tuple(args.beams), checkpoint=args.checkpoint,
                            attention_cost_png=args.attention_cost, attention_lengths=tuple(args.attention_lengths),
                            levers=args.levers, matmul_size=args.matmul_size, profile_steps=args.profile)
        result = run_bench(load_config(args.config, args.overrides), settings)
    except MtkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["environment"]["runtime"] = runtime  # mtkit.runtime.tune_process's settings, in force for every figure
    result["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
