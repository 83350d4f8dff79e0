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

from mtkit.config import ServeConfig
from mtkit.errors import MtkitError
from mtkit.runtime import tune_process

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, translate with and evaluate RNN encoder-decoder models, with and without attention.")
log = logging.getLogger("mtkit")

THREADS_HELP = "CPU threads for torch (default: all cores; 1 is fastest on a machine that is busy)."
LAYER_HELP = "Transformer runs: show the cross-attention of decoder layer N (1-based; default: the mean of all layers)."
HEAD_HELP = "Transformer runs: show attention head N (1-based; default: the mean of all heads)."
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
    nproc: int = typer.Option(1, min=1, help="Data-parallel processes on this machine (gloo on CPU, NCCL on GPU)."),
) -> None:
    """Train a model (running `prepare` first when needed)."""
    from mtkit.runs import read_latest
    from mtkit.train import train as run_train

    if config is None:
        if not resume:
            raise MtkitError("give a config file: mtkit train CONFIG (or --resume to continue a run)")
        config = (run or read_latest()) / "config.yaml"
    run_train(_config(config, set_), resume=resume, overwrite=overwrite, device=device, nproc=nproc)


@app.command()
def translate(
    run: Optional[Path] = typer.Option(None, help="Run directory (default: the latest run)."),
    checkpoint: str = typer.Option("best", help="best, last, or a path to a checkpoint file."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Read sentences from FILE instead of stdin."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write translations to FILE instead of stdout."),
    beam: Optional[int] = typer.Option(None, help="Beam size (1 = greedy; default: the run's decode.beam)."),
    length_penalty: Optional[float] = typer.Option(None, help="Rank by log_prob / length**ALPHA (default: the run's)."),
    n_best: int = typer.Option(1, help="Write the N best hypotheses per line as 'LINE ||| TEXT ||| LOG_PROB ||| SCORE'."),
    attention: Optional[Path] = typer.Option(None, help="Write pieces, weights and which attention they are to FILE (JSON lines)."),
    layer: Optional[int] = typer.Option(None, help=LAYER_HELP),
    head: Optional[int] = typer.Option(None, help=HEAD_HELP),
    batch_size: Optional[int] = typer.Option(None, help="Sentences per decoding batch (default: the run's)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: CUDA when available)."),
    threads: Optional[int] = typer.Option(None, min=1, help=THREADS_HELP),
) -> None:
    """Translate sentences line by line: one output line per input line."""
    from mtkit.device import set_threads
    from mtkit.translate import Translator, translate_file

    set_threads(threads)
    translator = Translator.from_run(run, checkpoint, device)
    count = translate_file(translator, input if input is not None else sys.stdin.buffer,
                           output if output is not None else sys.stdout, attention, layer=layer, head=head,
                           beam=beam, length_penalty=length_penalty, n_best=n_best, batch_size=batch_size)
    log.info("translated %d lines", count)


@app.command("eval")
def eval_(
    run: List[Path] = typer.Option([], help="Run directory to evaluate on its test split (repeatable; default: latest)."),
    by_length: bool = typer.Option(False, "--by-length", help="Also score buckets of sentence length and plot them."),
    passages: bool = typer.Option(False, "--passages", help="Score each run on its passage set (data.passage_windows): "
                                  "the same verses alone and joined into passages of k verses, each k against k=1 "
                                  "with a 95% interval that resamples whole windows."),
    forced: bool = typer.Option(False, "--forced", help="With --passages: no search, the teacher-forced loss of "
                                "each verse alone and as the first, middle or last verse of a k-verse passage."),
    src: Optional[Path] = typer.Option(None, help="Source file, to score system outputs given with --hyp."),
    ref: Optional[Path] = typer.Option(None, help="Reference file (with --src and --hyp)."),
    hyp: List[Path] = typer.Option([], help="System output file (repeatable)."),
    name: List[str] = typer.Option([], help="Label of each run / --hyp, in order (default: its directory/file name)."),
    checkpoint: str = typer.Option("best", help="best or last (for runs)."),
    beam: Optional[int] = typer.Option(None, help="Beam size for translating runs (default: the run's decode.beam)."),
    edges: Optional[str] = typer.Option(None, help="Bucket edges in words, e.g. 10,20,30 (default: the run's length_edges)."),
    length_of: Optional[str] = typer.Option(None, help="Bucket by the length of src or ref (default: the run's eval.length_of)."),
    bootstrap: Optional[int] = typer.Option(None, help="Bootstrap resamples for the 95% intervals, 0: none (default: the run's eval.bootstrap)."),
    seed: Optional[int] = typer.Option(None, help="Bootstrap seed (default: the run's eval.bootstrap_seed)."),
    out: Optional[Path] = typer.Option(None, help="Directory for scores.json, scores.csv and bleu_by_length.png."),
    threads: Optional[int] = typer.Option(None, min=1, help=THREADS_HELP),
) -> None:
    """Score runs or output files: corpus BLEU and chrF, and with --by-length BLEU per length bucket."""
    from mtkit import compare, results
    from mtkit.device import set_threads

    set_threads(threads)
    try:
        bucket_edges = [int(e) for e in edges.split(",")] if edges else None
    except ValueError:
        raise MtkitError(f"--edges {edges!r}: give increasing whole numbers separated by commas, e.g. 10,20,30") from None
    settings = dict(edges=bucket_edges, length_of=length_of, bootstrap=bootstrap if by_length or passages else 0,
                    seed=seed)
    if forced and not passages:
        raise MtkitError("--forced measures the passage set's verses by position; add --passages")
    if passages and (hyp or src or ref):
        raise MtkitError("--passages scores runs on their own passage sets; drop --src/--ref/--hyp")
    if passages and forced:
        from mtkit.plots import plot_position_losses

        losses = compare.compare_passage_losses(run, name, checkpoint, bootstrap, seed)
        typer.echo(results.format_position_table(losses))
        out_dir = out or compare.default_out_dir(run)
        for path in (results.write_position_json(losses, out_dir / "passages_forced.json"),
                     plot_position_losses(losses, out_dir / "passages_forced.png")):
            typer.echo(f"wrote {path}", err=True)
        return
    if passages:
        systems = compare.compare_passages(run, name, checkpoint, beam, **settings)
        typer.echo(results.format_paired_table(systems))
        if by_length:
            typer.echo("\n" + results.format_passage_table(systems))
    else:
        systems = compare.compare(runs=run, src=src, ref=ref, hyps=hyp, names=name, checkpoint=checkpoint, beam=beam,
                                  **settings)
        typer.echo(results.format_table(systems) if by_length else results.format_summary(systems))
    out_dir = out or compare.default_out_dir(run, hyp)
    for path in compare.write_results(systems, out_dir, plot=by_length, prefix="passages_" if passages else ""):
        typer.echo(f"wrote {path}", err=True)


@app.command()
def attention(
    sentence: Optional[str] = typer.Argument(None, help="Source sentence to translate and plot."),
    run: Optional[Path] = typer.Option(None, help="Run directory (default: the latest run)."),
    checkpoint: str = typer.Option("best", help="best, last, or a path to a checkpoint file."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Take the sentence from line --line of FILE."),
    from_json: Optional[Path] = typer.Option(None, help="Plot record --line of a `translate --attention` file instead."),
    line: int = typer.Option(1, min=1, help="Line number (1-based) in --input or --from-json."),
    layer: Optional[int] = typer.Option(None, help=LAYER_HELP),
    head: Optional[int] = typer.Option(None, help=HEAD_HELP),
    words: bool = typer.Option(False, "--words", help="Merge subword pieces into words."),
    text: bool = typer.Option(False, "--text", help="Also print the weights as a shaded grid in the terminal."),
    threshold: float = typer.Option(0.05, help="Alignment lines below this weight are left out."),
    out: Path = typer.Option(Path("results") / "attention", help="Directory for the PNG files."),
    stem: str = typer.Option("attention", help="File name stem: STEM_heatmap.png and STEM_lines.png."),
) -> None:
    """Translate a sentence and draw its attention: a heatmap and an alignment-line plot, titled with which."""
    from mtkit import alignment
    from mtkit.plots import text_grid

    if from_json is not None:
        if layer is not None or head is not None:
            raise MtkitError("--layer and --head choose the weights a model reports; a --from-json record holds the "
                             "ones it was written with (choose them with `mtkit translate --attention FILE --layer N "
                             "--head N`)")
        record = alignment.record_from_json(from_json, line)
    else:
        if input is not None:
            sentence = alignment.sentence_from_file(input, line)
        if sentence is None:
            raise MtkitError("give a SENTENCE, --input FILE --line N, or --from-json FILE --line N")
        record = alignment.record_from_model(sentence, run, checkpoint, layer=layer, head=head)
    if words:
        record = alignment.to_words(record)
    typer.echo(record.translation)
    typer.echo(f"weights: {record.attention}")
    if text:
        typer.echo(text_grid(record.source, record.target, record.weights))
    for path in alignment.draw(record, out, stem, threshold):
        typer.echo(f"wrote {path}", err=True)


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Directory for train.src / train.tgt."),
    task: str = typer.Option("reverse", help="reverse or substitute."),
    n: int = typer.Option(5000, min=1, help="Sentence pairs."),
    min_len: int = typer.Option(3, min=1, help="Shortest source sentence, in words."),
    max_len: int = typer.Option(12, min=1, help="Longest source sentence, in words."),
    vocab: int = typer.Option(30, min=2, help="Words in the made-up vocabulary."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Write a synthetic parallel corpus with a known right answer (for demos and tests)."""
    from mtkit.data.synthetic import make_pairs, write_pairs

    if task not in ("reverse", "substitute"):
        raise MtkitError(f"--task {task!r}: choose reverse or substitute")
    if min_len > max_len:
        raise MtkitError(f"--min-len {min_len} is larger than --max-len {max_len}")
    write_pairs(make_pairs(n, task, min_len, max_len, vocab, seed), out / "train.src", out / "train.tgt")
    typer.echo(f"wrote {n} pairs to {out / 'train.src'} and {out / 'train.tgt'}", err=True)


SERVE = ServeConfig()  # serve's defaults, shown in its --help


@app.command()
def serve(
    run: List[Path] = typer.Option([], help="Run directory to serve (repeatable; default: the latest run)."),
    checkpoint: str = typer.Option("best", help="best or last."),
    host: str = typer.Option(SERVE.host, help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(SERVE.port, min=0, max=65535, help="Port to listen on (0: any free port)."),
    allow_host: List[str] = typer.Option([], help="Another name requests may give as Host (repeatable); the "
                                                  "loopback names and --host are always accepted."),
    queue: int = typer.Option(SERVE.queue, min=1, help="Translate requests waiting or running per model; one more "
                                                       "gets 503 with Retry-After."),
    timeout: float = typer.Option(SERVE.timeout, min=0.1, help="Seconds a translate request may wait and run "
                                                               "before it gets 503."),
    results: Optional[Path] = typer.Option(None, help="Results directory of `mtkit eval --by-length [--passages] "
                                                      "--out DIR` (the study's results/) to show instead of each "
                                                      "run's own eval/ scores."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: CUDA when available)."),
    threads: Optional[int] = typer.Option(None, min=1, help=THREADS_HELP),
) -> None:
    """Serve a web page (and JSON API) that translates with the runs and shows where each model looks."""
    from dataclasses import replace

    from mtkit.device import set_threads
    from mtkit.runs import read_latest
    from mtkit.serve.app import serve as run_server

    set_threads(threads)
    limits = replace(SERVE, host=host, port=port, allowed_hosts=tuple(allow_host), queue=queue, timeout=timeout)
    run_server(run or [read_latest()], limits, checkpoint, device, results, echo=typer.echo)


def main() -> None:
    """Entry point of the `mtkit` console script."""
    tune_process()  # before any command imports torch, which loads libgomp and reads GOMP_SPINCOUNT
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
