"""How the Transformer's attention is built, each choice timed against its alternative on the config's model.

The inputs are real: the timed training batches' embedded sources and targets (round i takes batch i),
normalised by the first layer's LayerNorm, at the config's sizes, through that layer's own attention
weights (random or trained).

* Self-attention through `F.scaled_dot_product_attention` (`MultiHeadAttention`'s default, one
  fused kernel) against its explicit softmax path (`need_weights=True`, which cross-attention takes
  to show its weights): forward+backward over the encoder's sources (padding mask) and the
  decoder's targets (causal); both must agree to 1e-5.
* mtkit's `MultiHeadAttention` against `torch.nn.MultiheadAttention` (batch_first) holding the
  same weights: forward+backward over the sources, and incremental decoding of one query per step
  against the growing prefix, where mtkit projects each new position's keys and values once and
  keeps them (as `TransformerDecoder.step` does) and torch's module, which has no cache, projects
  the whole prefix again at every step. Both must agree to 1e-5.
* The decoder's incremental `step` with its key/value cache against `features` recomputed over the
  whole prefix at every step: greedy decoding of a batch of test sentences, both through
  `mtkit.search.decode`; both must give the same tokens.

Timing is `benchmarks.levers.interleaved` (ABBA...); each record holds the median seconds per call of
each side, their ratio, and its check: `max_abs_difference` and `agree`, or `same_tokens`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from mtkit.config import Config
from mtkit.data.batching import Batch
from mtkit.model import EncoderOutput, Memory, Seq2Seq, StepOutput
from mtkit.model.transformer import MultiHeadAttention, TransformerDecoder, TransformerState
from mtkit.search import decode

from benchmarks.levers import interleaved, lever_record

AGREE = 1e-5  # largest difference of outputs that counts as the same numbers
SMALL_CALL_ROUNDS = 5  # a single attention call takes milliseconds: this many times the rounds


class AttentionInput(NamedTuple):
    """A self-attention call at a real batch's shape."""

    attention: MultiHeadAttention  # the first layer's, with the model's weights
    x: Tensor  # (B, L, d) that layer's normalised input; requires grad, as inside the model
    mask: Tensor | None  # (B, L) True on real tokens; None: causal
    causal: bool


def self_attention_input(model: Seq2Seq, batch: Batch, side: str) -> AttentionInput:
    """Return the first encoder ("src": padding mask) or decoder ("tgt": causal) layer's self-attention input."""
    stack, tokens = (model.encoder, batch.src) if side == "src" else (model.decoder, batch.tgt_in)
    layer = stack.layers[0]
    with torch.no_grad():
        x = layer.self_norm(stack.embed(tokens))  # (B, L, d)
    return AttentionInput(layer.self_attn, x.requires_grad_(True), batch.src_mask if side == "src" else None,
                          side == "tgt")


def mtkit_attention(inp: AttentionInput, need_weights: bool = False) -> Tensor:
    """Return mtkit's self-attention output (B, L, d): fused, or the explicit softmax with need_weights."""
    attn = inp.attention
    return attn(inp.x, attn.project(inp.x), inp.mask, inp.causal, need_weights)[0]


def torch_twin(attn: MultiHeadAttention) -> nn.MultiheadAttention:
    """Return torch's nn.MultiheadAttention (batch_first) with attn's weights: in_proj [W_Q; W_K; W_V], out W_O."""
    twin = nn.MultiheadAttention(attn.query.in_features, attn.heads, dropout=attn.dropout, batch_first=True)
    with torch.no_grad():
        twin.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key_value.weight]))  # key_value is [W_K; W_V]
        twin.in_proj_bias.copy_(torch.cat([attn.query.bias, attn.key_value.bias]))
        twin.out_proj.weight.copy_(attn.out.weight)
        twin.out_proj.bias.copy_(attn.out.bias)
    return twin.train(attn.training)


def torch_attention(twin: nn.MultiheadAttention, inp: AttentionInput) -> Tensor:
    """Return torch's self-attention output (B, L, d) for a padding-masked input."""
    return twin(inp.x, inp.x, inp.x, key_padding_mask=~inp.mask, need_weights=False)[0]


def backward(modules: Sequence[nn.Module], inp: AttentionInput, forward: Callable[[], Tensor]) -> None:
    """Run `forward` and a backward pass from its sum, in training mode, from zero gradients."""
    for module in modules:
        module.train().zero_grad(set_to_none=True)
    inp.x.grad = None
    forward().sum().backward()


def timed_backward(modules: Sequence[nn.Module], inputs: Sequence[AttentionInput],
                   forward: Callable[[AttentionInput], Tensor]) -> Callable[[int], None]:
    """Return one side of a lever: round i runs forward(inputs[i % len]) and its backward pass."""
    def run(i: int) -> None:
        inp = inputs[i % len(inputs)]
        backward(modules, inp, lambda: forward(inp))
    return run


def max_difference(modules: Sequence[nn.Module], a: Callable[[], Tensor], b: Callable[[], Tensor]) -> float:
    """Return max |a() − b()| with the modules in eval mode (no dropout) and no gradients; leave them training."""
    try:
        with torch.no_grad():
            for module in modules:
                module.eval()
            return float((a() - b()).abs().max())
    finally:
        for module in modules:
            module.train()


def checked(record: dict[str, Any], modules: Sequence[nn.Module], inputs: Sequence[Any],
            a: Callable[[Any], Tensor], b: Callable[[Any], Tensor]) -> dict[str, Any]:
    """Return a lever record with its check: the largest difference of a(x) and b(x) over the inputs, and
    whether it is within AGREE."""
    worst = max(max_difference(modules, lambda: a(x), lambda: b(x)) for x in inputs)
    return {**record, "max_abs_difference": float(f"{worst:.3g}"), "agree": worst <= AGREE}


def shapes(inputs: Sequence[AttentionInput], rows: int | None = None) -> str:
    """Return a note on the batches timed: how many, and their mean (B, L) (B at most `rows`)."""
    sizes = [(min(len(inp.x), rows or len(inp.x)), inp.x.size(1)) for inp in inputs]
    mean_b, mean_l = (sum(size[k] for size in sizes) / len(sizes) for k in (0, 1))
    return f"{len(sizes)} real batches, mean (B, L) = ({mean_b:.0f}, {mean_l:.0f})"


# ---- a: the fused kernel against the explicit softmax ---------------------------------------------


def fused_self_attention(inputs: Sequence[AttentionInput], rounds: int) -> dict[str, Any]:
    """Time self-attention forward+backward through F.scaled_dot_product_attention and through the explicit
    softmax; round i runs inputs[i % len]."""
    attn, where = [inputs[0].attention], "decoder (causal)" if inputs[0].causal else "encoder"
    explicit = partial(mtkit_attention, need_weights=True)
    timing = interleaved(timed_backward(attn, inputs, mtkit_attention), timed_backward(attn, inputs, explicit), rounds)
    record = lever_record(f"fused self-attention, {where}", "F.scaled_dot_product_attention",
                          "explicit softmax (need_weights=True)", timing, "seconds per forward+backward",
                          shapes(inputs))
    return checked(record, attn, inputs, mtkit_attention, explicit)


# ---- b: mtkit's module against torch's ------------------------------------------------------------


def against_torch_training(inputs: Sequence[AttentionInput], rounds: int) -> dict[str, Any]:
    """Time encoder self-attention forward+backward through mtkit's MultiHeadAttention and torch's, same weights."""
    attn = inputs[0].attention
    twin = torch_twin(attn)
    torch_side = partial(torch_attention, twin)
    timing = interleaved(timed_backward([attn], inputs, mtkit_attention), timed_backward([twin], inputs, torch_side),
                         rounds)
    record = lever_record("MultiHeadAttention, training", "mtkit's MultiHeadAttention", "torch.nn.MultiheadAttention",
                          timing, "seconds per forward+backward", f"encoder self-attention, {shapes(inputs)}")
    return checked(record, [attn, twin], inputs, mtkit_attention, torch_side)


def cached_decoding(attn: MultiHeadAttention, x: Tensor) -> Tensor:
    """Return outputs (B, T, d) of one query per step against a cache of keys and values, each projected once."""
    cache = attn.project(x[:, :0])  # (B, 2, h, 0, dh)
    out = []
    for t in range(x.size(1)):
        query = x[:, t : t + 1]  # (B, 1, d)
        cache = torch.cat([cache, attn.project(query)], 3)  # (B, 2, h, t+1, dh), as DecoderLayer appends
        out.append(attn(query, cache)[0])  # every cached key is earlier: no mask
    return torch.cat(out, 1)


def uncached_decoding(twin: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """Return outputs (B, T, d) of one query per step through torch's module: it projects the whole prefix each step."""
    return torch.cat([twin(x[:, t : t + 1], x[:, : t + 1], x[:, : t + 1], need_weights=False)[0]
                      for t in range(x.size(1))], 1)


def against_torch_decoding(inputs: Sequence[AttentionInput], rows: int, rounds: int) -> dict[str, Any]:
    """Time incremental decoding (one query per step, growing prefix) through mtkit's attention and torch's.

    Each batch's first `rows` target sequences (a decoding batch) run as many steps as the batch is long.
    """
    attn = inputs[0].attention
    twin = torch_twin(attn)
    xs = [inp.x.detach()[:rows] for inp in inputs]  # (B', T, d) each
    mtkit_side, torch_side = partial(cached_decoding, attn), partial(uncached_decoding, twin)

    def run(decoding: Callable[[Tensor], Tensor]) -> Callable[[int], None]:
        def timed(i: int) -> None:
            attn.eval()
            twin.eval()
            with torch.inference_mode():  # as search runs
                decoding(xs[i % len(xs)])
        return timed

    record = lever_record("MultiHeadAttention, decoding", "mtkit, keys and values projected once",
                          "torch.nn.MultiheadAttention, whole prefix projected each step",
                          interleaved(run(mtkit_side), run(torch_side), rounds),
                          "seconds per decoding of a batch, one step a position", shapes(inputs, rows))
    return checked(record, [attn, twin], xs, mtkit_side, torch_side)


# ---- c: the decoder's cache against recomputing the prefix ---------------------------------------


class Prefix(NamedTuple):
    """The recomputing decoder's state: the tokens read so far. The batch is dim 0."""

    tokens: Tensor  # (N, t) bos first


class RecomputingDecoder(nn.Module):
    """A TransformerDecoder whose `step` runs `features` over the whole prefix again: no key/value cache."""

    def __init__(self, decoder: TransformerDecoder) -> None:
        super().__init__()
        self.inner = decoder

    @property
    def attention(self) -> MultiHeadAttention:
        """The inner decoder's last cross-attention."""
        return self.inner.attention

    def init_state(self, enc: EncoderOutput) -> tuple[Prefix, Memory]:
        """Return an empty prefix and the inner decoder's memory."""
        _, memory = self.inner.init_state(enc)
        return Prefix(enc.mask.new_zeros(enc.mask.size(0), 0, dtype=torch.long)), memory

    def step(self, prev_tokens: Tensor, state: Prefix, memory: Memory) -> StepOutput:
        """Return the last position's features and cross-attention, from `features` over the prefix and
        prev_tokens (N,)."""
        tokens = torch.cat([state.tokens, prev_tokens.unsqueeze(1)], 1)  # (N, t+1)
        empty = TransformerState(memory.states.new_zeros(0, 0, 0, 0, 0, 0))  # features reads its length only: 0
        features, attention = self.inner.features(tokens, empty, memory)  # (N, t+1, d), (N, t+1, S)
        return StepOutput(features[:, -1], Prefix(tokens), attention[:, -1])

    def logits(self, features: Tensor) -> Tensor:
        """Return the inner decoder's vocabulary scores (..., V)."""
        return self.inner.logits(features)


def cached_step(cfg: Config, model: Seq2Seq, src: list[list[int]], rounds: int) -> dict[str, Any]:
    """Time greedy decoding through the decoder's cached `step` and through `features` over each prefix."""
    recomputing = Seq2Seq(model.encoder, RecomputingDecoder(model.decoder))
    settings, tokens = replace(cfg.decode, beam=1), {}

    def run(name: str, net: Seq2Seq) -> Callable[[int], None]:
        def greedy(i: int) -> None:
            tokens[name] = [h[0].tokens for h in decode(net, src, settings)]
        return greedy

    timing = interleaved(run("cached", model), run("recomputed", recomputing), rounds)
    record = lever_record("Transformer step with key/value cache", "step, cache of keys and values",
                          "features over the whole prefix at every step", timing,
                          f"seconds per greedy decoding of {len(src)} sentences")
    return {**record, "same_tokens": tokens["cached"] == tokens["recomputed"]}


def time_transformer_levers(cfg: Config, model: Seq2Seq, batches: Sequence[Batch],
                            test_src: Sequence[Sequence[int]], rounds: int = 4) -> list[dict[str, Any]]:
    """Return the Transformer's attention levers (see the module docstring), timed on the batches (round i on
    batch i) and on the first `cfg.decode.batch_size` test sentences."""
    small = SMALL_CALL_ROUNDS * rounds
    src_side = [self_attention_input(model, batch, "src") for batch in batches[:small]]
    tgt_side = [self_attention_input(model, batch, "tgt") for batch in batches[:small]]
    return [fused_self_attention(src_side, small), fused_self_attention(tgt_side, small),
            against_torch_training(src_side, small), against_torch_decoding(tgt_side, cfg.decode.batch_size, small),
            cached_step(cfg, model, [list(s) for s in test_src[: cfg.decode.batch_size]], rounds)]
