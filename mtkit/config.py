"""Experiment configuration: frozen dataclasses, the one place YAML is read.

Every default lives in these dataclasses and nowhere else; an example YAML lists only what it
changes. `load_config` checks every key and value and raises `MtkitError` with the full key path,
the bad value and what is allowed ("did you mean ...?" for misspelled keys).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from mtkit.errors import MtkitError

# Keys whose value must lie in a range: path -> (low, high, inclusive low).
# Kept beside the dataclasses so the defaults and their limits are read together.


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel corpus comes from and how it is cleaned and split."""

    source: Literal["text", "tsv", "bible"] = "bible"
    # BCP 47 tags of the two sides (e.g. es, en): labels only, for mtkit serve's page (lang="…"); null: not said
    src_lang: Optional[str] = None
    tgt_lang: Optional[str] = None
    src_file: Optional[str] = None  # source: text
    tgt_file: Optional[str] = None  # source: text
    tsv_file: Optional[str] = None  # source: tsv
    src_column: Union[int, str] = 0
    tgt_column: Union[int, str] = 1
    tsv_header: bool = False
    ref_column: Union[int, str, None] = None  # source: tsv; references (e.g. Gen.1.1), else line numbers
    src_module: str = "spaRV1909eb"  # source: bible
    tgt_module: str = "engKJV2006eb"
    module_dir: Optional[str] = None  # SWORD directory; auto-detected when unset
    dev_src: Optional[str] = None  # explicit dev/test files replace the random split
    dev_tgt: Optional[str] = None
    test_src: Optional[str] = None
    test_tgt: Optional[str] = None
    min_len: int = 1  # whitespace words, either side
    max_len: int = 80
    max_ratio: float = 3.0
    dev_size: int = 500
    test_size: int = 1500
    stratify: bool = True  # test split stratified by source length (see length_edges)
    length_edges: tuple[int, ...] = (10, 20, 30, 40, 50, 60)
    max_sentences: Optional[int] = None  # keep only the first N cleaned pairs (quick runs)
    # Passage test set: windows of lcm(1..passage_max_k) consecutive pairs (same book and chapter; for text/TSV
    # neighbouring lines or refs), held out of every split, each cut into inputs of k = 1..passage_max_k pairs.
    passage_windows: int = 0  # 0: no passage test set
    passage_max_k: int = 3
    # Training also gets inputs of 2..join_train_max_k consecutive training pairs joined (each ≤ max_len words).
    join_train_max_k: int = 1  # 1: single pairs only
    cache_dir: str = "runs/cache"  # prepared data, shared by runs with the same data settings


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings; the model is trained on the training split only."""

    model_type: Literal["bpe", "unigram"] = "bpe"
    vocab_size: int = 8000
    joint: bool = True  # one model for both languages, else one per side
    character_coverage: float = 1.0
    max_train_sentences: int = 200_000


@dataclass(frozen=True)
class AttentionConfig:
    """Which score function the decoder uses; `none` is the RNNencdec baseline."""

    kind: Literal["none", "additive", "dot", "general", "scaled_dot"] = "additive"
    dim: int = 256  # additive hidden size / scaled_dot key-query size


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of the Transformer (`model.arch: transformer`, Vaswani et al. 2017). d_model is the
    embedding and state size; model.dropout and model.tie_embeddings apply, the RNN keys do not."""

    d_model: int = 256
    heads: int = 4  # d_model must be divisible by heads
    ff_dim: int = 1024
    enc_layers: int = 3
    dec_layers: int = 3
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    attention_dropout: float = 0.0  # on the attention weights; model.dropout is applied everywhere else
    max_positions: int = 512  # learned positions: one vector each, so the longest input or output
    share_embeddings: bool = False  # one matrix for source and target tokens; needs tokenizer.joint


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder shape. Only `model.seq2seq.build_model` reads it."""

    arch: Literal["rnn", "transformer"] = "rnn"
    transformer: TransformerConfig = field(default_factory=TransformerConfig)  # arch: transformer only
    cell: Literal["rnn", "gru", "lstm"] = "gru"
    emb_dim: int = 256
    hidden_dim: int = 256  # encoder, per direction
    dec_hidden_dim: int = 512
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.2
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    decoder: Literal["bahdanau", "luong"] = "bahdanau"
    input_feeding: bool = True  # luong only
    init: Literal["backward_first", "mean", "last", "zero"] = "backward_first"
    out_dim: int = 256  # deep output / attentional vector size
    maxout: bool = False
    tie_embeddings: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, budgets and checkpointing."""

    batch_tokens: int = 4000  # target tokens per batch (length-bucketed)
    max_len: Optional[int] = None  # train only on pairs of at most this many words a side (RNNsearch-30 / -50)
    epochs: int = 10
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = None  # wall-time budget
    # CPU-time budget (the process's CPU seconds, all threads): models that share cores get equal compute
    # whatever the scheduler gives each, so three runs on two cores are treated alike.
    max_cpu_minutes: Optional[float] = None
    # Seed of the initial weights, dropout and batch order; None takes the top-level `seed`, which also draws
    # the data split. Setting this alone reruns a study with other weights on the very same data.
    seed: Optional[int] = None
    optimizer: Literal["adam", "adamw", "sgd", "adadelta"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["constant", "plateau", "inverse_sqrt"] = "constant"
    warmup_steps: int = 1000  # inverse_sqrt
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    clip: float = 1.0
    label_smoothing: float = 0.0
    teacher_forcing: float = 1.0  # probability of feeding the reference token
    valid_every: int = 500  # steps; 0 validates once per epoch
    valid_bleu_sentences: int = 200  # dev sentences greedily decoded for BLEU at each validation
    early_stop_metric: Literal["loss", "bleu"] = "loss"
    patience: Optional[int] = None  # validations without improvement before stopping
    log_every: int = 50
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = None  # CPU threads; all cores when unset
    attention_samples: int = 2  # dev sentences whose attention is plotted at each validation
    tensorboard: bool = True  # also log to run_dir/tensorboard when the tensorboard package is installed


@dataclass(frozen=True)
class DecodeConfig:
    """Search settings used by translate and eval."""

    beam: int = 5
    length_penalty: float = 1.0  # score / length**alpha; 0 disables
    max_len_ratio: float = 2.0  # maximum output pieces per source piece
    max_len_extra: int = 10
    batch_size: int = 64  # sentences per decoding batch
    max_src_len: int = 250  # source pieces; longer lines are truncated with a warning


@dataclass(frozen=True)
class EvalConfig:
    """BLEU by sentence length."""

    edges: tuple[int, ...] = (10, 20, 30, 40, 50, 60)
    length_of: Literal["src", "ref"] = "src"
    bootstrap: int = 1000
    bootstrap_seed: int = 12345


@dataclass(frozen=True)
class Config:
    """One experiment: data → tokenizer → model → training → decoding → evaluation."""

    run_dir: str = "runs/default"
    seed: int = 1234
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass(frozen=True)
class ServeConfig:
    """`mtkit serve`: where it listens and how much one request may ask. Not part of a run: the command's options."""

    host: str = "127.0.0.1"  # loopback: this machine only
    port: int = 8000  # 0: any free port
    allowed_hosts: tuple[str, ...] = ()  # Host header names accepted besides the bound address and loopback names
    max_text_chars: int = 100_000  # about 15,000 words; a source past decode.max_src_len pieces is truncated anyway
    max_beam: int = 20  # each search step scores beam × vocabulary hypotheses
    max_weights: int = 200_000  # attention weights a run in one answer, counted before decoding at the longest output
    max_examples: int = 20  # test sentences per examples request
    queue: int = 8  # translate requests waiting or running per model; one more gets 503 and Retry-After
    timeout: float = 30.0  # seconds a translate request may wait and run; past it, 503 (work not started is dropped)

    @property
    def max_body_bytes(self) -> int:
        """Return the largest request body read: the longest text at 12 bytes a character, plus the JSON around it.

        12 bytes is the most JSON spends on one character (a non-BMP one escaped as two \\uXXXX), so a
        text within `max_text_chars` is never refused for how it was encoded; the characters themselves
        are counted once the JSON is read.
        """
        return 12 * self.max_text_chars + 4096


# Allowed ranges: key path -> (minimum, maximum); None means unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.min_len": (1, None),
    "data.max_len": (1, None),
    "data.max_ratio": (1.0, None),
    "data.dev_size": (0, None),
    "data.test_size": (0, None),
    "data.max_sentences": (1, None),
    "data.passage_windows": (0, None),
    "data.passage_max_k": (1, 6),  # windows of lcm(1..6) = 60 pairs at most
    "data.join_train_max_k": (1, 6),
    "tokenizer.vocab_size": (8, None),
    "tokenizer.character_coverage": (0.9, 1.0),
    "tokenizer.max_train_sentences": (1, None),
    "model.emb_dim": (1, None),
    "model.hidden_dim": (1, None),
    "model.dec_hidden_dim": (1, None),
    "model.enc_layers": (1, None),
    "model.dec_layers": (1, None),
    "model.dropout": (0.0, 0.99),
    "model.out_dim": (1, None),
    "model.attention.dim": (1, None),
    "model.transformer.d_model": (1, None),
    "model.transformer.heads": (1, None),
    "model.transformer.ff_dim": (1, None),
    "model.transformer.enc_layers": (1, None),
    "model.transformer.dec_layers": (1, None),
    "model.transformer.max_positions": (1, None),
    "model.transformer.attention_dropout": (0.0, 0.99),
    "train.batch_tokens": (1, None),
    "train.max_len": (1, None),
    "train.epochs": (1, None),
    "train.max_steps": (1, None),
    "train.max_minutes": (0.0, None),
    "train.max_cpu_minutes": (0.0, None),
    "train.lr": (0.0, None),
    "train.weight_decay": (0.0, None),
    "train.warmup_steps": (1, None),
    "train.plateau_factor": (0.0, 1.0),
    "train.plateau_patience": (0, None),
    "train.clip": (0.0, None),
    "train.label_smoothing": (0.0, 0.99),
    "train.teacher_forcing": (0.0, 1.0),
    "train.valid_every": (0, None),
    "train.valid_bleu_sentences": (0, None),
    "train.patience": (1, None),
    "train.log_every": (1, None),
    "train.threads": (1, None),
    "train.attention_samples": (0, None),
    "decode.beam": (1, None),
    "decode.length_penalty": (0.0, None),
    "decode.max_len_ratio": (0.1, None),
    "decode.max_len_extra": (0, None),
    "decode.batch_size": (1, None),
    "decode.max_src_len": (1, None),
    "eval.bootstrap": (0, None),
}


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Return the Config in YAML file `path` (defaults when None) with `key=value` overrides applied."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MtkitError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise MtkitError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
        except UnicodeDecodeError as err:
            raise MtkitError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise MtkitError(f"{path}: a config must be a mapping of sections (data:, model:, ...)")
        raw = loaded
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MtkitError(f"--set {item!r}: write overrides as key=value, e.g. model.hidden_dim=256")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise MtkitError(f"--set {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                             "quote it, e.g. key='[x'") from None
        _set_path(raw, key.strip(), parsed)
    where = f"{path}: " if path is not None else ""
    cfg = _build(Config, raw, prefix="", where=where)
    _check_combinations(cfg, where)
    return cfg


def _check_combinations(cfg: Config, where: str) -> None:
    """Reject settings that are valid one by one but not together."""
    data = cfg.data
    needed = {"text": ("src_file", "tgt_file"), "tsv": ("tsv_file",), "bible": ()}[data.source]
    for key in needed:
        if getattr(data, key) is None:
            raise MtkitError(f"{where}`data.{key}` is required when `data.source` is {data.source!r}")
    if data.ref_column is not None and data.source != "tsv":
        raise MtkitError(f"{where}`data.ref_column` names a TSV column; it is read only when `data.source` is 'tsv' "
                         f"(here {data.source!r})")
    for split in ("dev", "test"):
        src, tgt = getattr(data, f"{split}_src"), getattr(data, f"{split}_tgt")
        if (src is None) != (tgt is None):
            raise MtkitError(f"{where}`data.{split}_src` and `data.{split}_tgt` must be given together")
    if data.min_len > data.max_len:
        raise MtkitError(f"{where}`data.min_len` ({data.min_len}) is larger than `data.max_len` ({data.max_len})")
    if list(data.length_edges) != sorted(set(data.length_edges)) or list(cfg.eval.edges) != sorted(set(cfg.eval.edges)):
        raise MtkitError(f"{where}`data.length_edges` and `eval.edges` must be strictly increasing")
    _check_model_combinations(cfg.model, where)
    _check_transformer_fit(cfg, where)


def check_model(cfg: ModelConfig, where: str = "") -> None:
    """Raise MtkitError naming the key of the first bad value or combination in a `model` section.

    `load_config` checks every key already; this is for a ModelConfig built in Python (tests, notebooks).
    """
    _build(ModelConfig, _plain(asdict(cfg)), prefix="model.", where=where)
    _check_model_combinations(cfg, where)


def _check_model_combinations(cfg: ModelConfig, where: str) -> None:
    if cfg.arch == "transformer":
        _check_transformer(cfg, where)
        return
    if cfg.init == "backward_first" and not cfg.bidirectional:
        raise MtkitError(f"{where}`model.init`: backward_first starts the decoder from the backward encoder's "
                         "first state, which needs model.bidirectional: true; set model.init to "
                         "last, mean or zero for a unidirectional encoder")
    key_dim = (2 if cfg.bidirectional else 1) * cfg.hidden_dim
    if cfg.attention.kind == "dot" and cfg.dec_hidden_dim != key_dim:
        raise MtkitError(
            f"{where}`model.attention.kind`: dot scores decoder states against encoder states directly, so "
            f"model.dec_hidden_dim ({cfg.dec_hidden_dim}) must equal the encoder state size, "
            f"model.hidden_dim × {'2 (bidirectional)' if cfg.bidirectional else '1'} = {key_dim}; "
            f"change one of them or use general, scaled_dot or additive attention")
    if cfg.decoder == "luong" and cfg.attention.kind == "none":
        raise MtkitError(f"{where}`model.decoder`: luong needs attention, but model.attention.kind is none; "
                         "for the no-attention baseline (RNNencdec) set model.decoder: bahdanau")
    if cfg.maxout and cfg.decoder != "bahdanau":
        raise MtkitError(f"{where}`model.maxout` applies to the bahdanau deep output only; "
                         "set model.maxout: false or model.decoder: bahdanau")
    if cfg.tie_embeddings and cfg.out_dim != cfg.emb_dim:
        raise MtkitError(f"{where}`model.tie_embeddings` needs model.out_dim ({cfg.out_dim}) == "
                         f"model.emb_dim ({cfg.emb_dim}); make them equal or set tie_embeddings: false")


def _check_transformer(cfg: ModelConfig, where: str) -> None:
    t = cfg.transformer
    if t.d_model % t.heads:
        raise MtkitError(f"{where}`model.transformer.heads`: d_model ({t.d_model}) must be divisible by heads "
                         f"({t.heads}), so that every head gets d_model / heads dimensions")
    if cfg.attention.kind == "none":
        raise MtkitError(f"{where}`model.attention.kind`: none asks for no attention, but the Transformer attends "
                         "everywhere (multi-head scaled dot product); model.attention applies to RNNs only, remove it "
                         "or set model.arch: rnn for the RNNencdec baseline")


def _check_transformer_fit(cfg: Config, where: str) -> None:
    """The Transformer against the other sections: shared embeddings need one tokenizer, and learned
    positions end at max_positions, so the longest source and output search may read must fit."""
    t, d = cfg.model.transformer, cfg.decode
    if cfg.model.arch != "transformer":
        return
    if t.share_embeddings and not cfg.tokenizer.joint:
        raise MtkitError(f"{where}`model.transformer.share_embeddings` needs one vocabulary for both languages; "
                         "set tokenizer.joint: true or share_embeddings: false")
    if t.positions != "learned":
        return
    longest = max(d.max_src_len, math.ceil(d.max_src_len * d.max_len_ratio) + d.max_len_extra)
    if t.max_positions < longest:
        raise MtkitError(f"{where}`model.transformer.max_positions`: got {t.max_positions}, but search may read "
                         f"{longest} positions (decode.max_src_len {d.max_src_len} × decode.max_len_ratio "
                         f"{d.max_len_ratio} + decode.max_len_extra {d.max_len_extra}); raise it or lower those")


def update(cfg: Config, changes: dict[str, Any], where: str = "") -> Config:
    """Return `cfg` with dotted keys set (e.g. {"decode.beam": 3}), checked as `load_config` checks a file.

    A value of None leaves the key as it is, so command-line options that were not given change nothing.
    """
    raw = config_to_dict(cfg)
    for key, value in changes.items():
        if value is not None:
            _set_path(raw, key, value)
    updated = _build(Config, raw, prefix="", where=where)
    _check_combinations(updated, where)
    return updated


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Return `cfg` as plain YAML-able data (tuples become lists)."""
    return _plain(asdict(cfg))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Return the Config stored by `config_to_dict` (e.g. inside a checkpoint)."""
    return _build(Config, data, prefix="", where="")


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML (every value, defaults included)."""
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MtkitError(f"--set {dotted}: `{part}` is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, where: str) -> Any:
    section = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise MtkitError(f"{where}`{section}` must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f"; valid keys: {', '.join(fields)}"
            raise MtkitError(f"{where}`{full}`: unknown key{hint}")
        values[key] = _check(hints[key], value, full, where)
    return cls(**values)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of " + _type_name(typing.get_args(tp)[0])
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _check(tp: Any, value: Any, key: str, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, prefix=f"{key}.", where=where)
    try:
        result = _coerce(tp, value)
    except (TypeError, ValueError):
        raise MtkitError(f"{where}`{key}`: got {value!r}; expected {_type_name(tp)}") from None
    bounds = RANGES.get(key)
    if bounds is not None and isinstance(result, (int, float)) and not isinstance(result, bool):
        low, high = bounds
        if (low is not None and result < low) or (high is not None and result > high):
            allowed = f"at least {low}" if high is None else f"between {low} and {high}"
            raise MtkitError(f"{where}`{key}`: got {value!r}; must be {allowed}")
    return result


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ValueError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value)
            except (TypeError, ValueError):
                continue
        raise ValueError
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    raise TypeError(f"unsupported config type {tp}")
