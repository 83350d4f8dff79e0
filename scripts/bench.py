#!/usr/bin/env python
"""Benchmark a config's model: training and translation speed, peak memory, utilisation.

    python scripts/bench.py configs/bench_bible.yaml --json results/bench.json
    python scripts/bench.py configs/bench_bible.yaml --checkpoint runs/bench_bible/best.pt --levers
    python scripts/bench.py configs/bench_bible.yaml --sentences 0 --steps 0 --attention-cost docs/attention_cost.png

Parses options, sets threads and the allocator, and calls `mtkit.bench.run_bench`; see that module
for what is measured and how FLOPs are counted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="experiment YAML (its data is prepared when needed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set model.decoder=bahdanau (repeatable)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (0 skips training)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--window", type=int, default=5, help="steps per timed window; the median window counts")
    parser.add_argument("--sentences", type=int, default=1500, help="test sentences to translate (0 skips)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="beam sizes to translate with")
    parser.add_argument("--checkpoint", type=Path, help="trained weights to translate with (else random)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    parser.add_argument("--attention-cost", type=Path, metavar="PNG",
                        help="also time decoding/training against source and target length, with and "
                             "without attention, and draw the figure to PNG")
    parser.add_argument("--attention-lengths", type=int, nargs="+", default=[10, 40, 80, 120, 160])
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also run N training steps under the PyTorch profiler and list where the time goes")
    parser.add_argument("--levers", action="store_true", help="also time each speed lever against its alternative")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n×n products that measure the peak")
    parser.add_argument("--json", type=Path, help="write the full result as JSON here")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    # as the mtkit command does (see mtkit/cli.py): idle OpenMP threads sleep; OMP_WAIT_POLICY=ACTIVE to compare
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from mtkit.bench import format_table, run_bench, write_json
    from mtkit.config import load_config
    from mtkit.errors import MtkitError

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.steps and args.steps < args.window:
            raise MtkitError(f"--steps ({args.steps}) must be at least --window ({args.window})")
        result = run_bench(cfg, steps=args.steps, warmup=args.warmup if args.steps else 0, window=args.window,
                           sentences=args.sentences, beams=args.beams, checkpoint=args.checkpoint,
                           attention_cost_png=args.attention_cost,
                           attention_cost_options={"lengths": args.attention_lengths}, levers=args.levers,
                           matmul_size=args.matmul_size, profile_steps=args.profile)
    except MtkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
