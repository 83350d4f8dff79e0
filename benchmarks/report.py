"""The benchmark's result as a plain-text table, and as a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GIB = 1024**3


def _row(name: str, value: str, load: Any = "") -> str:
    return f"{name:<46}{value:>16}  {load!s:>5}"


def _beam_name(beam: int) -> str:
    return "greedy" if beam == 1 else f"beam {beam}"


def _model_rows(result: dict[str, Any]) -> list[str]:
    m, model = result["matmul"], result["model"]
    return [_row("matmul peak (best / median)", f"{m['best']:.0f} / {m['median']:.0f} GF/s"),
            _row("train FLOPs per target token", f"{model['train_flops_per_target_token'] / 1e6:.1f} M"),
            _row("  vocabulary projection share", f"{model['output_layer_share']:.0%}"),
            _row("  bound at matmul peak", f"{model['bound_tokens_per_s']:.0f} tok/s")]


def _speed_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for t in result["translation"]:
        name = _beam_name(t["beam"])
        rows += [_row(f"{name}: {t['sentences']} sentences", f"{t['seconds']:.1f} s", t["load"]),
                 _row(f"  {name} sentences/s, tokens/s", f"{t['sentences_per_s']:.1f}, {t['tokens_per_s']:.0f}"),
                 _row(f"  {name} mean output length", f"{t['mean_output_tokens']:.1f}")]
    tr = result.get("training")
    if tr:
        rows += [_row("training, median", f"{tr['tokens_per_s']:.0f} tok/s", tr["load"]),
                 _row("  range over windows", f"{tr['tokens_per_s_min']:.0f}-{tr['tokens_per_s_max']:.0f}"),
                 _row("  per CPU second", f"{tr['tokens_per_cpu_s']:.0f} tok/s"),
                 _row("  utilisation of matmul peak", f"{tr['utilisation']:.1%}")]
    return rows


def _memory_rows(result: dict[str, Any]) -> list[str]:
    rows = [_row(f"peak RSS, {_beam_name(t['beam'])}", f"{t['peak_rss_bytes'] / GIB:.2f} GiB")
            for t in result["translation"]]
    if result.get("training"):
        rows.append(_row("peak RSS, training", f"{result['training']['peak_rss_bytes'] / GIB:.2f} GiB"))
    return rows + [_row("peak RSS, whole process", f"{result['peak_rss_bytes'] / GIB:.2f} GiB")]


def _cost_rows(cost: dict[str, Any]) -> list[str]:
    """Return the attention cost fits' slopes (µs per m·t, and per m², t² where fitted), and what was skipped."""
    names = {"per_mt": "m·t", "per_mm": "m²", "per_tt": "t²"}
    rows = [_row(f"{what} {kind}: µs per {names[term]}", f"{fit[term] * 1e6:.3f}")
            for kind, fits in cost.get("fits", {}).items() for what, fit in fits.items()
            for term in names if term in fit]
    return rows + [_row(f"attention cost {kind}", "skipped") + f"\n    {reason}"
                   for kind, reason in cost.get("skipped", {}).items()]


def _profile_rows(prof: dict[str, Any]) -> list[str]:
    """Return the profile's heading and its operators by share of self CPU time."""
    rows = [f"\nself CPU time of {prof['steps']} training steps ({prof['self_cpu_seconds']:.2f} s), by operator:"]
    return rows + [f"  {op['name']:<44}{op['share']:>7.1%}  {op['calls']:>7} calls" for op in prof["operators"]]


def _lever_rows(lever: dict[str, Any]) -> list[str]:
    """Return a lever's speed-up row and what it checked (agreement, same tokens), or why it was skipped."""
    if "skipped" in lever:
        return [_row(f"lever: {lever['name']}", "skipped") + f"\n    {lever['skipped']}"]
    rows = [_row(f"lever: {lever['name']}", f"×{lever['speedup']:.2f}", lever["load"]),
            _row("  seconds, lever / alternative", f"{lever['lever_seconds']:.3g} / {lever['baseline_seconds']:.3g}")]
    if "max_abs_difference" in lever:
        agree = "agree" if lever["agree"] else "DIFFER"
        rows.append(_row("  max |difference| of outputs", f"{lever['max_abs_difference']:.1e} {agree}"))
    if "same_tokens" in lever:
        rows.append(_row("  same tokens", "yes" if lever["same_tokens"] else "NO"))
    return rows


def _runtime_line(result: dict[str, Any]) -> str:
    """Return the line saying which runtime settings every figure, each lever's included, was timed under."""
    runtime = result["environment"].get("runtime")
    if runtime is None:
        return "runtime settings: not recorded (not run through python -m benchmarks)"
    spin = (f"OMP_WAIT_POLICY={runtime['OMP_WAIT_POLICY']}" if runtime.get("OMP_WAIT_POLICY")
            else f"GOMP_SPINCOUNT={runtime.get('GOMP_SPINCOUNT')}")
    kept = "keeps freed memory" if runtime.get("malloc_keeps_freed") else "glibc's defaults"
    return f"timed as the mtkit command ships (mtkit.runtime.tune_process): {spin}, malloc {kept}"


def _extra_rows(result: dict[str, Any]) -> list[str]:
    """Return the rows of the optional parts: attention cost slopes, profile, levers."""
    rows = _cost_rows(result.get("attention_cost", {}))
    if "profile" in result:
        rows += _profile_rows(result["profile"])
    levers = [row for lever in result.get("levers", []) for row in _lever_rows(lever)]
    return rows + ([_runtime_line(result)] + levers if levers else [])


def format_table(result: dict[str, Any]) -> str:
    """Return the benchmark result as a plain-text table."""
    env = result["environment"]
    header = [result["model"]["description"],
              f"threads {env['threads']}, load average at start {env['load_average'][0]}, "
              f"at end {env.get('load_average_end', ['?'])[0]}",
              "", f"{'measurement':<46}{'value':>16}  {'load':>5}"]
    return "\n".join(header + _model_rows(result) + _speed_rows(result) + _memory_rows(result) + _extra_rows(result))


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write the benchmark result as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
