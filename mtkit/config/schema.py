"""The configuration schema: frozen dataclasses, one field per key, every default and its meaning.

Each field carries, in its metadata, a one-line `help` and, for a number, its valid `range` (low,
high; None: unbounded), so a key's default, limits and meaning are read in one place; `keys()`
yields them for the docs' configuration reference. Reading YAML, `--set` overrides and checking
values against these types and ranges is `mtkit.config.load`'s job.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, NamedTuple, Optional, Union

Range = tuple[Union[float, None], Union[float, None]]


def setting(default: Any = dataclasses.MISSING, help: str = "", range: Range | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """Return a dataclass field whose metadata holds its one-line meaning and, for a number, its valid range."""
    metadata = {"help": help, "range": range}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


AT_LEAST_0, AT_LEAST_1 = (0, None), (1, None)
FRACTION = (0.0, 0.99)  # dropout and smoothing: 1.0 would leave nothing


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel corpus comes from and how it is cleaned and split."""

    source: Literal["text", "tsv", "bible"] = setting("bible", "which reader: two text files, one TSV file, or two "
                                                               "SWORD Bible modules")
    src_lang: Optional[str] = setting(None, "BCP 47 tag of the source side (e.g. es): a label for mtkit serve's "
                                            "page (lang=\"…\"); null: not said")
    tgt_lang: Optional[str] = setting(None, "BCP 47 tag of the target side (e.g. en), as src_lang")
    src_file: Optional[str] = setting(None, "source sentences, one a line (source: text)")
    tgt_file: Optional[str] = setting(None, "target sentences, line-aligned with src_file (source: text)")
    tsv_file: Optional[str] = setting(None, "tab-separated pairs (source: tsv)")
    src_column: Union[int, str] = setting(0, "the TSV column of the source side: its number, or its name with "
                                             "tsv_header")
    tgt_column: Union[int, str] = setting(1, "the TSV column of the target side, as src_column")
    tsv_header: bool = setting(False, "the TSV file's first line names its columns")
    ref_column: Union[int, str, None] = setting(None, "the TSV column of each pair's reference (e.g. Gen.1.1); "
                                                      "null: line numbers")
    src_module: str = setting("spaRV1909eb", "SWORD module of the source side (source: bible)")
    tgt_module: str = setting("engKJV2006eb", "SWORD module of the target side (source: bible)")
    module_dir: Optional[str] = setting(None, "SWORD directory holding the modules; null: found automatically")
    dev_src: Optional[str] = setting(None, "explicit dev source file; with dev_tgt it replaces the random dev split")
    dev_tgt: Optional[str] = setting(None, "explicit dev target file, line-aligned with dev_src")
    test_src: Optional[str] = setting(None, "explicit test source file; with test_tgt it replaces the random test "
                                            "split")
    test_tgt: Optional[str] = setting(None, "explicit test target file, line-aligned with test_src")
    min_len: int = setting(1, "shortest pair kept, in whitespace words on either side", AT_LEAST_1)
    max_len: int = setting(80, "longest pair kept, in whitespace words on either side", AT_LEAST_1)
    max_ratio: float = setting(3.0, "largest length ratio between the two sides of a kept pair", (1.0, None))
    dev_size: int = setting(500, "pairs drawn for the dev split", AT_LEAST_0)
    test_size: int = setting(1500, "pairs drawn for the test split", AT_LEAST_0)
    stratify: bool = setting(True, "draw the test split stratified by source length (see length_edges)")
    max_sentences: Optional[int] = setting(None, "keep only the first N cleaned pairs (quick runs); null: all",
                                           AT_LEAST_1)
    passage_windows: int = setting(0, "windows of lcm(1..passage_max_k) consecutive pairs held out of every split "
                                      "as the passage test set; 0: none", AT_LEAST_0)
    passage_max_k: int = setting(3, "the passage set cuts each window into inputs of k = 1..passage_max_k "
                                    "consecutive pairs", (1, 6))  # windows of lcm(1..6) = 60 pairs at most
    join_train_max_k: int = setting(1, "training also gets inputs of 2..join_train_max_k consecutive pairs joined "
                                       "(each ≤ max_len words); 1: single pairs only", (1, 6))
    cache_dir: str = setting("runs/cache", "where prepared data is kept, shared by runs with the same data settings")


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings; the model is trained on the training split only."""

    model_type: Literal["bpe", "unigram"] = setting("bpe", "SentencePiece's segmentation algorithm")
    vocab_size: int = setting(8000, "pieces in the vocabulary (each side's, unless joint)", (8, None))
    joint: bool = setting(True, "one model for both languages, else one per side")
    character_coverage: float = setting(1.0, "share of the training characters the vocabulary must cover",
                                        (0.9, 1.0))
    max_train_sentences: int = setting(200_000, "training sentences SentencePiece reads at most", AT_LEAST_1)


@dataclass(frozen=True)
class AttentionConfig:
    """Which score function the decoder uses; `none` is the RNNencdec baseline."""

    kind: Literal["none", "additive", "dot", "general", "scaled_dot"] = setting(
        "additive", "the score function of the RNN decoder's attention; none: the RNNencdec baseline")
    dim: int = setting(256, "additive attention's hidden size, or scaled_dot's key and query size", AT_LEAST_1)


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of the Transformer (`model.arch: transformer`, Vaswani et al. 2017). d_model is the
    embedding and state size; model.dropout and model.tie_embeddings apply, the RNN keys do not."""

    d_model: int = setting(256, "embedding and state size", AT_LEAST_1)
    heads: int = setting(4, "attention heads; d_model must be divisible by heads", AT_LEAST_1)
    ff_dim: int = setting(1024, "inner size of each position-wise feed-forward layer", AT_LEAST_1)
    enc_layers: int = setting(3, "encoder layers", AT_LEAST_1)
    dec_layers: int = setting(3, "decoder layers", AT_LEAST_1)
    positions: Literal["sinusoidal", "learned"] = setting("sinusoidal", "how token positions are encoded")
    attention_dropout: float = setting(0.0, "dropout on the attention weights (model.dropout applies everywhere "
                                            "else)", FRACTION)
    max_positions: int = setting(512, "learned positions: one vector each, so the longest input or output",
                                 AT_LEAST_1)
    share_embeddings: bool = setting(False, "one matrix for source and target tokens; needs tokenizer.joint")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder shape. Only `model.seq2seq.build_model` reads it."""

    arch: Literal["rnn", "transformer"] = setting("rnn", "the model family: an RNN encoder-decoder or a Transformer")
    transformer: TransformerConfig = setting(help="the Transformer's shape (arch: transformer only)",
                                             factory=TransformerConfig)
    cell: Literal["rnn", "gru", "lstm"] = setting("gru", "the recurrent cell of encoder and decoder")
    emb_dim: int = setting(256, "token embedding size", AT_LEAST_1)
    hidden_dim: int = setting(256, "encoder state size, per direction", AT_LEAST_1)
    dec_hidden_dim: int = setting(512, "decoder state size", AT_LEAST_1)
    enc_layers: int = setting(1, "encoder layers", AT_LEAST_1)
    dec_layers: int = setting(1, "decoder layers", AT_LEAST_1)
    bidirectional: bool = setting(True, "the encoder reads the source both ways")
    dropout: float = setting(0.2, "dropout between layers and on embeddings and outputs", FRACTION)
    attention: AttentionConfig = setting(help="the RNN decoder's attention", factory=AttentionConfig)
    decoder: Literal["bahdanau", "luong"] = setting("bahdanau", "the RNN decoder: attention before the state "
                                                                "update (bahdanau) or after it (luong)")
    input_feeding: bool = setting(True, "luong only: feed the last attentional vector back as input")
    init: Literal["backward_first", "mean", "last", "zero"] = setting(
        "backward_first", "the decoder's first state: from the backward encoder's first state, the mean or last "
                          "encoder state, or zeros")
    out_dim: int = setting(256, "size of the deep output (bahdanau) or attentional vector (luong)", AT_LEAST_1)
    maxout: bool = setting(False, "bahdanau only: a maxout deep output layer")
    tie_embeddings: bool = setting(False, "the output projection shares the target embedding matrix")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, budgets and checkpointing."""

    batch_tokens: int = setting(4000, "target tokens per batch (length-bucketed)", AT_LEAST_1)
    max_len: Optional[int] = setting(None, "train only on pairs of at most this many words a side (RNNsearch-30 / "
                                           "-50); null: all", AT_LEAST_1)
    epochs: int = setting(10, "passes over the training data at most", AT_LEAST_1)
    max_steps: Optional[int] = setting(None, "optimisation steps at most; null: no limit", AT_LEAST_1)
    max_minutes: Optional[float] = setting(None, "wall-time budget in minutes; null: none", (0.0, None))
    # CPU time (the process's, all threads) lets models that share cores get equal compute whatever the scheduler
    # gives each, so three runs on two cores are treated alike.
    max_cpu_minutes: Optional[float] = setting(None, "CPU-time budget in minutes, all threads summed; null: none",
                                               (0.0, None))
    # Setting train.seed alone reruns a study with other weights on the very same data (the top-level seed also
    # draws the split).
    seed: Optional[int] = setting(None, "seed of the initial weights, dropout and batch order; null: the top-level "
                                        "seed")
    optimizer: Literal["adam", "adamw", "sgd", "adadelta"] = setting("adam", "the optimisation algorithm")
    lr: float = setting(1e-3, "learning rate (the peak, with inverse_sqrt)", (0.0, None))
    weight_decay: float = setting(0.0, "weight decay of the optimizer", (0.0, None))
    schedule: Literal["constant", "plateau", "inverse_sqrt"] = setting(
        "constant", "learning-rate schedule: fixed, cut when the dev metric stalls, or warm-up then 1/sqrt(step)")
    warmup_steps: int = setting(1000, "inverse_sqrt: steps of linear warm-up", AT_LEAST_1)
    plateau_factor: float = setting(0.5, "plateau: factor the learning rate is multiplied by", (0.0, 1.0))
    plateau_patience: int = setting(2, "plateau: validations without improvement before a cut", AT_LEAST_0)
    clip: float = setting(1.0, "largest gradient norm; 0: no clipping", (0.0, None))
    label_smoothing: float = setting(0.0, "probability mass spread over the vocabulary in the loss", FRACTION)
    teacher_forcing: float = setting(1.0, "probability of feeding the reference token rather than the model's own",
                                     (0.0, 1.0))
    valid_every: int = setting(500, "steps between validations; 0: once per epoch", AT_LEAST_0)
    valid_bleu_sentences: int = setting(200, "dev sentences greedily decoded for BLEU at each validation",
                                        AT_LEAST_0)
    early_stop_metric: Literal["loss", "bleu"] = setting("loss", "the dev metric that picks best.pt and early "
                                                                 "stopping")
    patience: Optional[int] = setting(None, "validations without improvement before stopping; null: never stop "
                                            "early", AT_LEAST_1)
    log_every: int = setting(50, "steps between progress lines", AT_LEAST_1)
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "where to train; auto: CUDA when available")
    threads: Optional[int] = setting(None, "CPU threads; null: all cores", AT_LEAST_1)
    attention_samples: int = setting(2, "dev sentences whose attention is plotted at each validation", AT_LEAST_0)
    tensorboard: bool = setting(True, "also log to run_dir/tensorboard when the tensorboard package is installed")


@dataclass(frozen=True)
class DecodeConfig:
    """Search settings used by translate and eval."""

    beam: int = setting(5, "beam size; 1: greedy", AT_LEAST_1)
    length_penalty: float = setting(1.0, "hypotheses are ranked by score / length**alpha; 0 disables", (0.0, None))
    max_len_ratio: float = setting(2.0, "output pieces per source piece at most", (0.1, None))
    max_len_extra: int = setting(10, "output pieces allowed beyond max_len_ratio", AT_LEAST_0)
    batch_size: int = setting(64, "sentences per decoding batch", AT_LEAST_1)
    max_src_len: int = setting(250, "source pieces read at most; longer lines are truncated with a warning",
                               AT_LEAST_1)


@dataclass(frozen=True)
class EvalConfig:
    """BLEU by sentence length (the buckets are the top-level `length_edges`)."""

    length_of: Literal["src", "ref"] = setting("src", "which side's word count puts a sentence in a length bucket")
    bootstrap: int = setting(1000, "bootstrap resamples for the 95% intervals; 0: none", AT_LEAST_0)
    bootstrap_seed: int = setting(12345, "seed of the bootstrap resamples")


@dataclass(frozen=True)
class Config:
    """One experiment: data → tokenizer → model → training → decoding → evaluation."""

    run_dir: str = setting("runs/default", "where the run's checkpoints, logs and outputs go")
    seed: int = setting(1234, "seed of the data split, and of training unless train.seed is set")
    length_edges: tuple[int, ...] = setting(
        (10, 20, 30, 40, 50, 60), "sentence-length buckets, upper-inclusive words (0-10, 11-20, …, 61+): the "
                                  "stratified test split, the prepare report, BLEU by length and mtkit serve's page")
    data: DataConfig = setting(help="the parallel corpus, its cleaning and splits", factory=DataConfig)
    tokenizer: TokenizerConfig = setting(help="SentencePiece", factory=TokenizerConfig)
    model: ModelConfig = setting(help="the model's shape", factory=ModelConfig)
    train: TrainConfig = setting(help="optimisation, budgets and checkpoints", factory=TrainConfig)
    decode: DecodeConfig = setting(help="search, for translate and eval", factory=DecodeConfig)
    eval: EvalConfig = setting(help="BLEU by length and its intervals", factory=EvalConfig)


@dataclass(frozen=True)
class ServeConfig:
    """`mtkit serve`: where it listens and how much one request may ask. Not part of a run: the command's options."""

    host: str = setting("127.0.0.1", "the address to listen on; loopback: this machine only")
    port: int = setting(8000, "the port to listen on; 0: any free port")
    allowed_hosts: tuple[str, ...] = setting((), "Host header names accepted besides the bound address and "
                                                 "loopback names")
    max_text_chars: int = setting(100_000, "characters of one text at most (about 15,000 words; a source past "
                                           "decode.max_src_len pieces is truncated anyway)")
    max_beam: int = setting(20, "largest beam a request may ask (each step scores beam × vocabulary hypotheses)")
    max_weights: int = setting(200_000, "attention weights one answer may hold per run, counted before decoding "
                                        "at the longest output")
    max_examples: int = setting(20, "test sentences per examples request at most")
    queue: int = setting(8, "translate requests waiting or running per model; one more gets 503 and Retry-After")
    timeout: float = setting(30.0, "seconds a translate request may wait and run; past it, 503 (work not started "
                                   "is dropped)")

    @property
    def max_body_bytes(self) -> int:
        """Return the largest request body read: the longest text at 12 bytes a character, plus the JSON around it.

        12 bytes is the most JSON spends on one character (a non-BMP one escaped as two \\uXXXX), so a
        text within `max_text_chars` is never refused for how it was encoded; the characters themselves
        are counted once the JSON is read.
        """
        return 12 * self.max_text_chars + 4096


class Key(NamedTuple):
    """One configuration key, as the docs' reference lists it."""

    key: str  # dotted path, e.g. model.attention.kind
    type: Any  # the annotation, e.g. Literal['none', 'additive', ...]
    default: Any
    range: Range | None  # (low, high) for a number; None: any value of the type
    help: str


def keys(cls: type = Config, prefix: str = "") -> Iterator[Key]:
    """Yield (key, type, default, range, help) for every key of `cls` (a Config section or ServeConfig), in order.

    A section yields itself, then its keys.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        yield Key(prefix + f.name, hints[f.name], default, f.metadata.get("range"), f.metadata.get("help", ""))
        if dataclasses.is_dataclass(hints[f.name]):
            yield from keys(hints[f.name], f"{prefix}{f.name}.")


def key_range(cls: type, name: str) -> Range | None:
    """Return the valid (low, high) of field `name` of `cls`, or None when any value of its type goes."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("range")
