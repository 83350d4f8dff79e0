"""The `mtkit` command: a thin Typer shell over the Python API.

Each command parses options and calls one library function. A mistake the user can make raises
`MtkitError`, which is printed as one line on stderr with exit status 2: never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from mtkit.errors import MtkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, translate with and evaluate RNN encoder-decoder models, with and without attention.")
log = logging.getLogger("mtkit")

SET_HELP = "Override a config value, e.g. --set model.hidden_dim=256 (repeatable)."


def _config(path: Optional[Path], overrides: List[str]):
    from mtkit.config import load_config

    return load_config(path, overrides)


@app.command()
def prepare(
    config: Path = typer.Argument(..., help="Experiment YAML file."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    force: bool = typer.Option(False, help="Rebuild even when an up-to-date cache exists."),
) -> None:
    """Read, clean, split and tokenize the corpus; cache the encoded splits."""
    from mtkit.prepare import prepare as run_prepare

    prepared = run_prepare(_config(config, set_), force=force)
    typer.echo(prepared.report, err=True)
    typer.echo(f"{'up to date, nothing to do' if prepared.reused else 'prepared'}: {prepared.directory}", err=True)


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="Experiment YAML (with --resume: the run's own config.yaml)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, help="Continue the run in the config's run_dir from its last.pt."),
    run: Optional[Path] = typer.Option(None, help="With --resume and no CONFIG: the run directory (default: latest)."),
    overwrite: bool = typer.Option(False, help="Delete an existing run in run_dir and start again."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: CUDA when available)."),
) -> None:
    """Train a model (running `prepare` first when needed)."""
    from mtkit.train import read_latest, train as run_train

    if config is None:
        if not resume:
            raise MtkitError("give a config file: mtkit train CONFIG (or --resume to continue a run)")
        config = (run or read_latest()) / "config.yaml"
    run_train(_config(config, set_), resume=resume, overwrite=overwrite, device=device)


@app.command()
def translate(
    run: Optional[Path] = typer.Option(None, help="Run directory (default: the latest run)."),
    checkpoint: str = typer.Option("best", help="best, last, or a path to a checkpoint file."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Read sentences from FILE instead of stdin."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write translations to FILE instead of stdout."),
    beam: Optional[int] = typer.Option(None, help="Beam size (1 = greedy; default: the run's decode.beam)."),
    length_penalty: Optional[float] = typer.Option(None, help="Rank by log_prob / length**ALPHA."),
    n_best: int = typer.Option(1, help="Write the N best hypotheses per line as 'LINE ||| TEXT ||| LOG_PROB ||| SCORE'."),
    attention: Optional[Path] = typer.Option(None, help="Write pieces and attention weights per line to FILE (JSON lines)."),
    batch_size: Optional[int] = typer.Option(None, help="Sentences per decoding batch."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: CUDA when available)."),
) -> None:
    """Translate sentences line by line: one output line per input line."""
    from mtkit.translate import Translator, read_lines, translate_lines, write_attention

    translator = Translator.from_run(run, checkpoint, device)
    if attention is not None and not translator.has_attention:
        raise MtkitError("this model has no attention (model.attention.kind = none), so it has no weights to write; "
                         "drop --attention")
    if input is not None:
        if not input.is_file():
            raise MtkitError(f"--input {input}: no such file")
        with open(input, "rb") as handle:
            lines = read_lines(handle, str(input))
    else:
        lines = read_lines(sys.stdin.buffer)
    out = open(output, "w", encoding="utf-8") if output is not None else sys.stdout
    attn = open(attention, "w", encoding="utf-8") if attention is not None else None
    try:
        options = dict(beam=beam, length_penalty=length_penalty, n_best=n_best, batch_size=batch_size)
        for number, result in enumerate(translate_lines(translator, lines, **options), start=1):
            if n_best > 1:
                for hyp in result.hypotheses:
                    text = translator.tokenizer.decode_tgt(hyp.tokens)
                    out.write(f"{number} ||| {text} ||| {hyp.log_prob:.4f} ||| {hyp.score:.4f}\n")
            else:
                out.write(result.text + "\n")
            if attn is not None:
                write_attention(attn, number, translator, result)
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
        if attn is not None:
            attn.close()
    log.info("translated %d lines", len(lines))


def main() -> None:
    """Entry point of the `mtkit` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        app()
    except MtkitError as err:
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
