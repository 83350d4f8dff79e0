"""Scores out: terminal tables, CSV and JSON files of `mtkit.evaluate`'s records, and reading the JSON back.

The only file access of evaluation is here. The JSON format ("mtkit-evaluation", version 1) is what
`mtkit eval` writes and `mtkit serve`, the plots and the study's scripts read.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

from mtkit.buckets import LengthBuckets
from mtkit.errors import MtkitError
from mtkit.evaluate import BucketScore, PairedRatio, PositionLoss, SystemScore

JSON_FORMAT = "mtkit-evaluation"
JSON_VERSION = 1


def format_position_table(losses: dict[str, list[PositionLoss]]) -> str:
    """Return a terminal table: per k and position, each system's loss increase over alone [95% paired CI]."""
    names = list(losses)
    if not names or not losses[names[0]]:
        return "(no passage losses)"
    header = ["k", "position", "verses"] + [f"{name} alone → here (+increase [95% CI])" for name in names]
    rows = []
    for i, p in enumerate(losses[names[0]]):
        row = [str(p.k), p.position, str(p.verses)]
        for name in names:
            q = losses[name][i]
            cell = f"{q.alone:.3f} → {q.loss:.3f} ({q.increase:+.3f}"
            cell += ")" if q.ci_low is None else f" [{q.ci_low:+.3f}, {q.ci_high:+.3f}])"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *rows]]
    return "\n".join(["Teacher-forced loss of the same verses alone and inside passages (nats per reference piece)",
                      "", *lines, "", "95% CI: paired bootstrap over windows"])


def write_position_json(losses: dict[str, list[PositionLoss]], path: Path) -> Path:
    """Write each system's position losses as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": "mtkit-position-losses", "version": 1,
            "systems": [{"name": name, "losses": [asdict(p) for p in rows]} for name, rows in losses.items()]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _bleu_cell(b: BucketScore) -> str:
    if b.bleu is None:
        return "-"
    if b.ci_low is None:
        return f"{b.bleu:.1f}"
    return f"{b.bleu:.1f} [{b.ci_low:.1f}, {b.ci_high:.1f}]"


def format_table(systems: Sequence[SystemScore]) -> str:
    """Return a terminal table: one row per length bucket, per system BLEU [95% CI] and line count.

    Below the buckets come overall BLEU and chrF per system, then the sacrebleu signatures.
    """
    if not systems:
        return "(no systems)"
    labels = [b.label for b in systems[0].buckets]
    if any([b.label for b in s.buckets] != labels for s in systems):
        raise MtkitError("Systems were bucketed with different length edges "
                         f"({', '.join(f'{s.name}: {list(s.edges)}' for s in systems)}); "
                         "evaluate them with the same edges to tabulate them together.")
    same_counts = all([b.count for b in s.buckets] == [b.count for b in systems[0].buckets]
                      for s in systems)
    side = "src" if systems[0].length_of == "src" else "ref"

    header = [f"{side} words"] + (["n"] if same_counts else [])
    for s in systems:
        header += [f"{s.name} BLEU [95% CI]"] + ([] if same_counts else ["n"])
    rows = []
    for i, label in enumerate(labels):
        row = [label] + ([str(systems[0].buckets[i].count)] if same_counts else [])
        for s in systems:
            row += [_bleu_cell(s.buckets[i])] + ([] if same_counts else [str(s.buckets[i].count)])
        rows.append(row)
    totals = [["all"] + ([str(systems[0].count)] if same_counts else []),
              ["chrF"] + ([""] if same_counts else [])]
    for s in systems:
        totals[0] += [f"{s.bleu:.1f}"] + ([] if same_counts else [str(s.count)])
        totals[1] += [f"{s.chrf:.1f}"] + ([] if same_counts else [""])

    widths = [max(len(r[c]) for r in [header, *rows, *totals]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()

    rule = "-" * len(line(header))
    out = [line(header), rule, *map(line, rows), rule, *map(line, totals), ""]
    bleu_sigs = {s.bleu_signature for s in systems}
    chrf_sigs = {s.chrf_signature for s in systems}
    if len(bleu_sigs) == 1 and len(chrf_sigs) == 1:
        out += [f"BLEU: {systems[0].bleu_signature}", f"chrF: {systems[0].chrf_signature}"]
    else:
        for s in systems:
            out += [f"{s.name} BLEU: {s.bleu_signature}", f"{s.name} chrF: {s.chrf_signature}"]
    boot = {(s.n_boot, s.seed) for s in systems}
    if len(boot) == 1 and systems[0].n_boot > 0:
        out.append(f"95% CI: percentile bootstrap, {systems[0].n_boot} resamples, seed {systems[0].seed}")
    return "\n".join(out)


def format_passage_table(systems: Sequence[SystemScore]) -> str:
    """Return the passage tables: by number of verses joined (the same verses in every row), then by input length.

    Each system gets BLEU [95% CI], chrF and the output/reference length ratio per row: on long
    inputs BLEU alone is swayed by the brevity penalty, which chrF and the ratio show apart.
    """
    if not systems:
        return "(no systems)"
    side = "src" if systems[0].length_of == "src" else "ref"
    out = ["Passages of k consecutive verses: every k covers the same verses", ""]
    out += _score_rows(systems, lambda s: s.by_k, "verses")
    out += ["", f"Passages by input length ({side} words)", ""]
    out += _score_rows(systems, lambda s: s.buckets, f"{side} words")
    return "\n".join(out)


def format_paired_table(systems: Sequence[SystemScore]) -> str:
    """Return the paired table: per k, input length, then per system BLEU and BLEU_k / BLEU_1 [95% paired CI].

    This is the study's headline: the same verses at every k, the interval from resampled windows.
    """
    if not systems or not systems[0].paired:
        return "(no passage scores)"
    header = ["k", "inputs", "src words"] + [f"{s.name} {col}" for s in systems for col in ("BLEU", "×k=1 [95% CI]")]
    rows = []
    for i, p in enumerate(systems[0].paired):
        row = [str(p.k), str(p.inputs), f"{p.mean_src_words:.1f}"]
        for s in systems:
            q = s.paired[i]
            ratio = "-" if q.ratio is None else f"{q.ratio:.3f}"
            if q.ci_low is not None:
                ratio += f" [{q.ci_low:.3f}, {q.ci_high:.3f}]"
            row += [f"{q.bleu:.1f}", ratio]
        rows.append(row)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    first = systems[0]
    how = (f"95% CI: paired bootstrap over the {first.windows} windows, {first.n_boot} resamples (seed {first.seed + 2})"
           if first.n_boot else "no intervals (bootstrap 0)")
    return "\n".join(["The same verses alone (k=1) and inside passages of k verses: BLEU, and BLEU ÷ BLEU at k=1", "",
                      *lines, "", how])


def _score_rows(systems: Sequence[SystemScore], buckets_of: Callable[[SystemScore], list[BucketScore]],
                first: str) -> list[str]:
    header = [first, "n"] + [f"{s.name} {col}" for s in systems for col in ("BLEU [95% CI]", "chrF", "len")]
    rows = []
    for i, bucket in enumerate(buckets_of(systems[0])):
        row = [bucket.label, str(bucket.count)]
        for s in systems:
            b = buckets_of(s)[i]
            row += [_bleu_cell(b), "-" if b.chrf is None else f"{b.chrf:.1f}",
                    "-" if b.ratio is None else f"{b.ratio:.2f}"]
        rows.append(row)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip()
            for r in [header, *rows]]


CSV_COLUMNS = ["system", "bucket", "low", "high", "count", "bleu", "ci_low", "ci_high", "chrf", "ratio",
               "to_k1", "to_k1_ci_low", "to_k1_ci_high", "length_of", "bleu_signature", "chrf_signature"]


def write_csv(systems: Sequence[SystemScore], path: Path) -> Path:
    """Write one row per system and bucket, plus an "all" row per system; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for s in systems:
            common = {"system": s.name, "length_of": s.length_of,
                      "bleu_signature": s.bleu_signature, "chrf_signature": s.chrf_signature}
            paired = {p.k: p for p in s.paired}
            for b in s.buckets + s.by_k:  # by_k rows are labelled k=1, k=2, ... and carry the paired ratio
                p = paired.get(b.low) if b.label.startswith("k=") else None
                writer.writerow({**common, "bucket": b.label, "low": b.low, "high": b.high,
                                 "count": b.count, "bleu": b.bleu, "ci_low": b.ci_low,
                                 "ci_high": b.ci_high, "chrf": b.chrf, "ratio": b.ratio,
                                 **({"to_k1": p.ratio, "to_k1_ci_low": p.ci_low, "to_k1_ci_high": p.ci_high}
                                    if p else {})})
            writer.writerow({**common, "bucket": "all", "low": "", "high": "", "count": s.count,
                             "bleu": s.bleu, "ci_low": "", "ci_high": "", "chrf": s.chrf})
    return path


def write_json(systems: Sequence[SystemScore], path: Path) -> Path:
    """Write all scores, signatures, edges and bootstrap settings as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": JSON_FORMAT, "version": JSON_VERSION,
            "systems": [{**asdict(s), "edges": list(s.edges)} for s in systems]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_json(path: Path) -> list[SystemScore]:
    """Return the systems stored by `write_json`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MtkitError(f"Evaluation file {path} does not exist; write it with write_json "
                         "(mtkit evaluate ... --json) first.") from None
    except json.JSONDecodeError as e:
        raise MtkitError(f"Evaluation file {path} is not valid JSON ({e}); "
                         "rewrite it with write_json.") from None
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise MtkitError(f"{path} is not an mtkit evaluation file (no \"format\": \"{JSON_FORMAT}\"); "
                         "give a file written by write_json.")
    if data.get("version") != JSON_VERSION:
        raise MtkitError(f"{path} has evaluation file version {data.get('version')!r}; "
                         f"this mtkit reads version {JSON_VERSION}. Re-run the evaluation.")
    try:
        return [SystemScore(**{**s, "edges": tuple(s["edges"]),
                               "buckets": _labelled([BucketScore(**b) for b in s["buckets"]], s["edges"]),
                               "by_k": [BucketScore(**b) for b in s.get("by_k", [])],
                               "paired": [PairedRatio(**p) for p in s.get("paired", [])]})
                for s in data["systems"]]
    except (KeyError, TypeError) as e:
        raise MtkitError(f"{path} has a malformed system entry ({e}); rewrite it with write_json.") from None


def _labelled(buckets: list[BucketScore], edges: Sequence[int]) -> list[BucketScore]:
    """Return length buckets with today's labels: files written before the first bucket's label said 0 read "1-…"."""
    labels = LengthBuckets(edges).labels
    if len(labels) != len(buckets):
        raise TypeError(f"{len(buckets)} buckets for edges {list(edges)}")
    return [replace(b, label=label) for b, label in zip(buckets, labels)]


def format_summary(systems: Sequence[SystemScore]) -> str:
    """Return one line per system with corpus BLEU and chrF, then the signatures."""
    width = max(len(s.name) for s in systems)
    lines = [f"{s.name.ljust(width)}  BLEU {s.bleu:5.2f}  chrF {s.chrf:5.2f}  ({s.count} lines)" for s in systems]
    return "\n".join(lines + [f"BLEU: {systems[0].bleu_signature}", f"chrF: {systems[0].chrf_signature}"])
