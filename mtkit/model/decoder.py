"""Decoders: one `step` serves training and search; teacher forcing hoists what it can.

Two wirings share the parts in `Decoder`:

* `BahdanauDecoder` (RNNsearch, Bahdanau et al. 2015): attend from the previous state s_{t-1},
  feed [emb(y_{t-1}); c_t] to the RNN, and read s_t, c_t, emb(y_{t-1}) in a deep output layer.
  With attention=None it is RNNencdec (Cho et al. 2014): c is one fixed vector made from the
  encoder's final states, fed at every step and read by the output layer; nothing else of the
  source reaches the decoder.
* `LuongDecoder` (global attention, Luong et al. 2015): step the RNN first, attend from the current
  state s_t, and predict from h̃_t = tanh(W_c [c_t; s_t]); optionally feed h̃_{t-1} back in.

Per-batch state lives in two NamedTuples whose tensors all have the batch as dim 0, so a beam
search reorders or expands them with `select(x, idx)`:

* `DecoderState` changes at every step;
* `Memory` is built once per batch from the encoder output (the projected attention keys included).
  It may hold one row per sentence for g consecutive rows of the state (the beams of a beam
  search): state row n reads memory row n // g.

`forward` is teacher forcing. It never recomputes per-sentence work, applies the output layers and
the vocabulary projection once over all positions, and runs the RNN over the whole target at once
where nothing depends on the previous step's output (no attention, or Luong without input feeding).
Where a step does depend on the previous one, the embeddings' share of the RNN's input gates is
still computed for all positions in one product, and only the rest runs step by step.
`unroll` is the plain loop over `step` (`unroll_steps`, which training's scheduled sampling runs
too); tests check that both give the same numbers. Where a wiring has a fused recurrence
(`mtkit.kernels`) and the kernels are fused, teacher forcing hands its step loop to it whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import kernels
from mtkit.model.attention import AdditiveAttention, Attention
from mtkit.model.encoder import EncoderOutput, make_rnn, rnn_cell

INITS = ("backward_first", "mean", "last", "zero")


class DecoderState(NamedTuple):
    """The recurrent state after a step. Every tensor has the batch (or beam) as dim 0."""

    hidden: Tensor  # (B, L, H) every decoder layer's state; hidden[:, -1] is s_t
    cell: Tensor | None  # (B, L, H) LSTM memory cells; None for rnn and gru
    input_feed: Tensor | None  # (B, out_dim) Luong's h̃_{t-1}; None without input feeding


class Memory(NamedTuple):
    """What the decoder reads of the source, built once per batch. The batch is dim 0.

    A step may run g·B state rows against B memory rows: g consecutive rows read one sentence.
    """

    states: Tensor  # (B, S, K) encoder states: the values attention averages
    projected: Tensor | None  # (B, S, *) projected keys, attention.precompute(states); None without attention
    mask: Tensor  # (B, S) bool, True on real tokens
    context: Tensor | None  # (B, K) RNNencdec's fixed c; None with attention


class StepOutput(NamedTuple):
    """One decoder step. `Decoder.logits(features)` gives the scores over the vocabulary."""

    features: Tensor  # (B, out_dim) the vector the vocabulary projection reads
    state: DecoderState
    attention: Tensor | None  # (B, S) weights of this step; None without attention


Fields = TypeVar("Fields", bound=tuple)  # DecoderState, Memory, EncoderOutput, TransformerState


def select(fields: Fields, idx: Tensor) -> Fields:
    """Return a copy of a state record (DecoderState, TransformerState, Memory, EncoderOutput) with rows idx (N,)
    of every tensor.

    Reorders beams (idx = parent beam of each survivor) and expands a batch to beams
    (idx = arange(B).repeat_interleave(beam)). None fields stay None.
    """
    return type(fields)(*(f.index_select(0, idx) if isinstance(f, Tensor) else f for f in fields))


@dataclass(frozen=True)
class DecoderSettings:
    """What every wiring takes beyond its sizes; `Decoder` describes each."""

    num_layers: int = 1
    cell: str = "gru"
    init: str = "backward_first"
    out_dim: int = 256
    dropout: float = 0.0
    pad_id: int = 0
    tie_embeddings: bool = False


def unroll_steps(decoder: nn.Module, tgt_in: Tensor, state: tuple, memory: Memory,
                 teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """Return features (B, T, O) and attention (B, T, S) (None without) from `decoder.step` once per position.

    Any decoder with `step` and `logits` (the RNNs', the Transformer's). teacher_forcing < 1 feeds back
    the model's own argmax instead of tgt_in's token at random steps, each with probability 1 − teacher_forcing
    (scheduled sampling); at 1 every step reads tgt_in (B, T), the reference for teacher forcing.
    """
    prev, features, weights = tgt_in[:, 0], [], []
    for t in range(tgt_in.size(1)):
        out = decoder.step(prev, state, memory)
        state = out.state
        features.append(out.features)  # (B, O)
        weights.append(out.attention)  # (B, S) or None
        if t + 1 < tgt_in.size(1):
            prev = tgt_in[:, t + 1]
            if teacher_forcing < 1.0:
                guess = decoder.logits(out.features).argmax(-1)  # (B,)
                use_ref = torch.rand(guess.shape, device=guess.device) < teacher_forcing
                prev = torch.where(use_ref, prev, guess)
    attention = None if weights[0] is None else torch.stack(weights, 1)  # (B, T, S)
    return torch.stack(features, 1), attention


class Decoder(nn.Module):
    """Parts every wiring shares: embedding, RNN, initial state, attention call, vocabulary projection.

    vocab: V; emb_dim: E; hidden_dim: H, the decoder state size; key_dim: K, the encoder state size;
    attention: a module from `make_attention`, or None; rnn_input_dim: set by the subclass.
    settings (`DecoderSettings`): num_layers and cell of the RNN; out_dim, O, the size of the features
    the vocabulary projection reads; dropout; pad_id; tie_embeddings (out_dim must equal emb_dim). init chooses the initial state: tanh(W ←h_1) ("backward_first", Bahdanau et al. 2015, A.2.2),
    tanh(W mean_j h_j) ("mean"), tanh(W [→h_len; ←h_1]) ("last") or zeros ("zero"). Every layer
    gets its own slice of W's output; LSTM memory cells start at zero. "backward_first" reads the
    backward half of `final`, so it needs a bidirectional encoder: build_model checks that, this
    class cannot. Without attention, c is `final` (`mean` when init is "mean").
    """

    wiring = ""

    def __init__(self, vocab: int, emb_dim: int, hidden_dim: int, key_dim: int, attention: Attention | None,
                 rnn_input_dim: int, settings: DecoderSettings = DecoderSettings()) -> None:
        super().__init__()
        if settings.init not in INITS:
            raise ValueError(f"unknown init {settings.init!r}; choose one of: {', '.join(INITS)}")
        self.vocab = vocab
        self.hidden_dim = hidden_dim
        self.key_dim = key_dim
        self.num_layers = settings.num_layers
        self.cell = settings.cell
        self.init = settings.init
        self.out_dim = settings.out_dim
        self.emb_dim = emb_dim
        self.attention = attention
        self.embed = nn.Embedding(vocab, emb_dim, padding_idx=settings.pad_id)
        self.dropout = kernels.Dropout(settings.dropout)
        self.rnn = make_rnn(settings.cell, rnn_input_dim, hidden_dim, settings.num_layers, settings.dropout)
        summary_dim = key_dim // 2 if settings.init == "backward_first" else key_dim
        self.bridge = None if settings.init == "zero" else nn.Linear(summary_dim, settings.num_layers * hidden_dim)
        self.out = nn.Linear(settings.out_dim, vocab)  # the one vocabulary projection
        if settings.tie_embeddings:
            if settings.out_dim != emb_dim:
                raise ValueError(f"tied embeddings need out_dim == emb_dim, got {settings.out_dim} and {emb_dim}")
            self.out.weight = self.embed.weight  # Press & Wolf (2017)

    # ---- per batch -------------------------------------------------------------------------

    def init_state(self, enc: EncoderOutput) -> tuple[DecoderState, Memory]:
        """Return the initial DecoderState and the Memory read at every step, from the encoder output."""
        batch = enc.states.size(0)
        if self.bridge is None:
            hidden = enc.states.new_zeros(batch, self.num_layers, self.hidden_dim)  # (B, L, H)
        else:
            hidden = torch.tanh(self.bridge(self._summary(enc)))  # (B, L*H)
            hidden = hidden.view(batch, self.num_layers, self.hidden_dim)  # (B, L, H)
        cell = torch.zeros_like(hidden) if self.cell == "lstm" else None  # (B, L, H)
        state = DecoderState(hidden, cell, self._initial_input_feed(enc))
        if self.attention is None:
            # RNNencdec: one fixed c; the encoder states are never read again
            projected, context = None, enc.mean if self.init == "mean" else enc.final  # (B, K)
        else:
            projected, context = self.attention.precompute(enc.states), None  # (B, S, *)
        return state, Memory(enc.states, projected, enc.mask, context)

    def _summary(self, enc: EncoderOutput) -> Tensor:
        """Return the encoder vector the initial state is made from: (B, K) or (B, K/2)."""
        if self.init == "backward_first":
            return enc.final[:, self.key_dim // 2:]  # ←h_1, (B, K/2)
        if self.init == "mean":
            return enc.mean  # (B, K)
        return enc.final  # (B, K)

    def _initial_input_feed(self, enc: EncoderOutput) -> Tensor | None:
        """Return h̃_0 for input feeding, or None; only the Luong wiring feeds one."""
        return None

    # ---- per step --------------------------------------------------------------------------

    def _embed(self, tokens: Tensor) -> Tensor:
        """Return dropped-out target embeddings: (..., E) for token ids (...)."""
        return self.dropout(self.embed(tokens))

    def _attend(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Return (c, weights) for query (B, H) or (B, T, H).

        The one place attention=None is handled: RNNencdec's c is the same at every step.
        """
        if self.attention is None:
            context = memory.context  # (B, K)
            if query.dim() == 2 and query.size(0) != context.size(0):  # g rows per sentence
                context = context.repeat_interleave(query.size(0) // context.size(0), 0)  # (g·B, K)
            return context, None
        return self.attention(query, memory.states, memory.mask, memory.projected)

    def _run_rnn(self, inputs: Tensor, state: DecoderState) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run the RNN over inputs (B, T, I) from state; return outputs (B, T, H), hidden and cell (B, L, H)."""
        hx = state.hidden.transpose(0, 1).contiguous()  # (L, B, H), torch's layout
        if self.cell == "lstm":
            cx = state.cell.transpose(0, 1).contiguous()  # (L, B, H)
            outputs, (h, c) = self.rnn(inputs, (hx, cx))
            return outputs, h.transpose(0, 1), c.transpose(0, 1)  # (B, T, H), (B, L, H), (B, L, H)
        outputs, h = self.rnn(inputs, hx)
        return outputs, h.transpose(0, 1), None  # (B, T, H), (B, L, H)

    def _input_weights(self) -> tuple[Tensor, Tensor]:
        """Return the first RNN layer's input weight (G, I) split as (W_emb (G, E), W_rest (G, I-E)).

        That layer reads [emb(y_{t-1}); rest], where rest (c_t, or h̃_{t-1}) needs the previous step
        and emb does not. Split once per batch, so that autograd sums the per-step gradients of
        W_rest alone and slices the whole weight once.
        """
        weight = self.rnn.weight_ih_l0  # (G, I), G = 3H for gru, 4H for lstm, H for rnn
        return weight.split([self.emb_dim, weight.size(1) - self.emb_dim], dim=1)

    def _emb_gates(self, emb: Tensor, w_emb: Tensor) -> Tensor:
        """Return the embeddings' share of the first layer's input gates, W_emb emb + b_ih: (..., G)."""
        return F.linear(emb, w_emb, self.rnn.bias_ih_l0)

    def _rnn_step(self, gates: Tensor, rest: Tensor | None, w_rest: Tensor,
                  state: DecoderState) -> tuple[Tensor, Tensor, Tensor | None]:
        """Advance the RNN one step; return s_t (B, H) and the new hidden and cell (B, L, H).

        gates (B, G) is `_emb_gates` of this step's embedding; rest (B, I-E) is the rest of the first
        layer's input, or None. Layers above the first read the output of the one below with torch's
        between-layer dropout, so this is `self.rnn` run for one step.
        """
        if rest is not None:
            gates = gates + F.linear(rest, w_rest)  # (B, G)
        hiddens, cells = [], []
        for layer in range(self.num_layers):
            if layer:
                below = F.dropout(hiddens[-1], self.rnn.dropout, self.training)  # (B, H)
                gates = F.linear(below, getattr(self.rnn, f"weight_ih_l{layer}"),
                                 getattr(self.rnn, f"bias_ih_l{layer}"))  # (B, G)
            previous = state.hidden[:, layer]  # (B, H)
            hidden_gates = F.linear(previous, getattr(self.rnn, f"weight_hh_l{layer}"),
                                    getattr(self.rnn, f"bias_hh_l{layer}"))  # (B, G)
            h, c = rnn_cell(self.cell, gates, hidden_gates, previous,
                            None if state.cell is None else state.cell[:, layer])
            hiddens.append(h)  # (B, H)
            cells.append(c)  # (B, H) or None
        cell = None if state.cell is None else torch.stack(cells, 1)  # (B, L, H)
        return hiddens[-1], torch.stack(hiddens, 1), cell

    def step(self, prev_tokens: Tensor, state: DecoderState, memory: Memory) -> StepOutput:
        """Return the features, new state and attention weights after reading prev_tokens (B,)."""
        emb = self._embed(prev_tokens)  # (B, E)
        w_emb, w_rest = self._input_weights()
        return self._step(emb, self._emb_gates(emb, w_emb), w_rest, state, memory)

    def _step(self, emb: Tensor, gates: Tensor, w_rest: Tensor, state: DecoderState,
              memory: Memory) -> StepOutput:
        """`step` from the embedded previous token emb (B, E) and its share of the input gates (B, G)."""
        raise NotImplementedError

    def logits(self, features: Tensor) -> Tensor:
        """Return unnormalised vocabulary scores (..., V) for features (..., out_dim)."""
        return self.out(features)

    # ---- whole target sequence -------------------------------------------------------------

    def forward(self, tgt_in: Tensor, state: DecoderState,
                memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Return teacher-forced logits (B, T, V) and attention (B, T, S) (None without attention).

        tgt_in (B, T) starts with BOS; padded positions give logits that the loss must ignore.
        """
        features, attention = self.features(tgt_in, state, memory)  # (B, T, O)
        return self.logits(features), attention  # one projection over all positions

    def features(self, tgt_in: Tensor, state: DecoderState,
                 memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Return teacher-forced features (B, T, O), what `logits` reads, and attention (B, T, S) or None.

        A loss can project only the positions it scores: `logits(features[tgt_out != PAD])`.
        """
        return self._teacher_forced(self._embed(tgt_in), state, memory)

    def unroll(self, tgt_in: Tensor, state: DecoderState,
               memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Return the same as `forward`, computed by calling `step` once per position (the reference)."""
        features, attention = unroll_steps(self, tgt_in, state, memory)  # (B, T, O), (B, T, S) or None
        return self.logits(features), attention  # (B, T, V)

    def _teacher_forced(self, emb: Tensor, state: DecoderState,
                        memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Return features (B, T, O) and attention (B, T, S) or None for embedded targets emb (B, T, E)."""
        raise NotImplementedError

    @property
    def whole_sequence(self) -> bool:
        """Whether teacher forcing runs the RNN over all target positions in one call."""
        return False

    @property
    def fused_recurrence(self) -> bool:
        """Whether this wiring has a fused recurrence in `mtkit.kernels` for teacher forcing."""
        return False

    def _takes_fused(self, emb: Tensor, memory: Memory) -> bool:
        """Whether this teacher-forced pass runs as the fused recurrence: the wiring has one, the kernels are
        fused (`kernels.fused`), and the keys are projected once (a Memory without them asks for the per-step
        path)."""
        return self.fused_recurrence and memory.projected is not None and kernels.fused(emb)


class BahdanauDecoder(Decoder):
    """RNNsearch decoder, Bahdanau et al. (2015), appendix A.2.2; RNNencdec when attention is None.

    c_t = attention(s_{t-1}, h)                         (eq. 5-6; or the fixed c of Cho et al. 2014)
    s_t = RNN(s_{t-1}, [emb(y_{t-1}); c_t])             (eq. 4)
    t_t = U_o s_t + V_o emb(y_{t-1}) + C_o c_t          deep output; maxout over pairs if `maxout`,
                                                        else tanh; then p(y_t) = softmax(W_o t_t)
    The paper's output layer reads s_{t-1}; reading s_t (as Cho et al. do) lets it see c_t's effect.
    """

    wiring = "bahdanau"

    def __init__(self, vocab: int, emb_dim: int, hidden_dim: int, key_dim: int, attention: Attention | None,
                 settings: DecoderSettings = DecoderSettings(), *, maxout: bool = False) -> None:
        super().__init__(vocab, emb_dim, hidden_dim, key_dim, attention, emb_dim + key_dim, settings)
        self.maxout = maxout
        pieces = 2 if maxout else 1  # maxout pools pairs of units (Goodfellow et al. 2013)
        self.deep_output = nn.Linear(hidden_dim + key_dim + emb_dim, pieces * settings.out_dim)

    def _output(self, s: Tensor, context: Tensor, emb: Tensor) -> Tensor:
        """Return the deep output t (..., O) from s (..., H), c (..., K) and emb(y_{t-1}) (..., E)."""
        t = self.deep_output(torch.cat([s, context, emb], -1))  # (..., O) or (..., 2*O)
        if self.maxout:
            t = t.unflatten(-1, (self.out_dim, 2)).amax(-1)  # (..., O)
        else:
            t = torch.tanh(t)  # (..., O)
        return self.dropout(t)

    def _recur(self, gates: Tensor, w_rest: Tensor, state: DecoderState,
               memory: Memory) -> tuple[Tensor, Tensor, Tensor | None, DecoderState]:
        """Return s_t (B, H), c_t (B, K), weights (B, S) or None, and the new state.

        gates (B, G) is the embedding's share of the RNN input gates; the RNN reads [emb; c_t].
        """
        context, weights = self._attend(state.hidden[:, -1], memory)  # scored from s_{t-1}
        s, hidden, cell = self._rnn_step(gates, context, w_rest, state)  # (B, H)
        return s, context, weights, DecoderState(hidden, cell, None)

    def _step(self, emb: Tensor, gates: Tensor, w_rest: Tensor, state: DecoderState,
              memory: Memory) -> StepOutput:
        s, context, weights, state = self._recur(gates, w_rest, state, memory)
        return StepOutput(self._output(s, context, emb), state, weights)  # (B, O)

    def _teacher_forced(self, emb: Tensor, state: DecoderState,
                        memory: Memory) -> tuple[Tensor, Tensor | None]:
        steps = emb.size(1)
        if self.attention is None:
            # c never changes, so the RNN can read the whole target in one call
            context = memory.context.unsqueeze(1).expand(-1, steps, -1)  # (B, T, K)
            s, _, _ = self._run_rnn(torch.cat([emb, context], -1), state)  # (B, T, H)
            return self._output(s, context, emb), None
        # only the recurrence is sequential; the embeddings' input gates and the deep output run
        # once over all positions. unbind, not emb[:, t]: the backward of T slices would write T
        # zero-padded (B, T, G) gradients, O(T²) memory traffic.
        w_emb, w_rest = self._input_weights()
        gates = self._emb_gates(emb, w_emb)  # (B, T, G)
        if self._takes_fused(emb, memory):  # the loop below as one autograd node
            s_all, c_all, attention = kernels.AdditiveGRURecurrence.apply(
                gates, state.hidden[:, 0], memory.projected, memory.states, memory.mask,
                self.attention.query_proj.weight, self.attention.v.weight.view(-1), w_rest,
                self.rnn.weight_hh_l0, self.rnn.bias_hh_l0)  # (B, T, H), (B, T, K), (B, T, S)
            return self._output(s_all, c_all, emb), attention
        states, contexts, weights = [], [], []
        for gates_t in gates.unbind(1):
            s, context, w, state = self._recur(gates_t, w_rest, state, memory)
            states.append(s)  # (B, H)
            contexts.append(context)  # (B, K)
            weights.append(w)  # (B, S)
        s_all = torch.stack(states, 1)  # (B, T, H)
        c_all = torch.stack(contexts, 1)  # (B, T, K)
        return self._output(s_all, c_all, emb), torch.stack(weights, 1)  # (B, T, O), (B, T, S)

    @property
    def whole_sequence(self) -> bool:
        return self.attention is None

    @property
    def fused_recurrence(self) -> bool:
        """One GRU layer reading additive attention, as the study's RNNsearch has (`kernels.AdditiveGRURecurrence`)."""
        return isinstance(self.attention, AdditiveAttention) and self.cell == "gru" and self.num_layers == 1


class LuongDecoder(Decoder):
    """Global attention decoder, Luong et al. (2015), section 3; needs an attention module.

    s_t = RNN(s_{t-1}, [emb(y_{t-1}); h̃_{t-1}])   (h̃_{t-1} only with input feeding, section 3.3)
    c_t = attention(s_t, h)                          (eq. 7-8)
    h̃_t = tanh(W_c [c_t; s_t])                       (eq. 5); p(y_t) = softmax(W_s h̃_t) (eq. 6)
    The fed-back h̃_{t-1} is taken before dropout.
    """

    wiring = "luong"

    def __init__(self, vocab: int, emb_dim: int, hidden_dim: int, key_dim: int, attention: Attention | None,
                 settings: DecoderSettings = DecoderSettings(), *, input_feeding: bool = True) -> None:
        if attention is None:
            raise ValueError("the Luong decoder needs attention; without it use BahdanauDecoder (RNNencdec)")
        rnn_input_dim = emb_dim + (settings.out_dim if input_feeding else 0)
        super().__init__(vocab, emb_dim, hidden_dim, key_dim, attention, rnn_input_dim, settings)
        self.input_feeding = input_feeding
        self.combine = nn.Linear(key_dim + hidden_dim, settings.out_dim, bias=False)  # W_c

    def _initial_input_feed(self, enc: EncoderOutput) -> Tensor | None:
        if not self.input_feeding:
            return None
        return enc.states.new_zeros(enc.states.size(0), self.out_dim)  # h̃_0 = 0, (B, O)

    def _attentional(self, s: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Return h̃ = tanh(W_c [c; s]) (B, [T,] O) and the weights, for s (B, [T,] H)."""
        context, weights = self._attend(s, memory)  # (B, [T,] K)
        return torch.tanh(self.combine(torch.cat([context, s], -1))), weights

    def _step(self, emb: Tensor, gates: Tensor, w_rest: Tensor, state: DecoderState,
              memory: Memory) -> StepOutput:
        # the RNN reads [emb; h̃_{t-1}] with input feeding, else emb alone
        s, hidden, cell = self._rnn_step(gates, state.input_feed, w_rest, state)  # (B, H)
        h_tilde, weights = self._attentional(s, memory)  # (B, O), (B, S)
        feed = h_tilde if self.input_feeding else None
        return StepOutput(self.dropout(h_tilde), DecoderState(hidden, cell, feed), weights)

    def _teacher_forced(self, emb: Tensor, state: DecoderState,
                        memory: Memory) -> tuple[Tensor, Tensor | None]:
        if not self.input_feeding:
            # no step reads the previous one's output: run the RNN, then attend for all t at once
            s, _, _ = self._run_rnn(emb, state)  # (B, T, H)
            h_tilde, weights = self._attentional(s, memory)  # (B, T, O), (B, T, S)
            return self.dropout(h_tilde), weights
        # input feeding: h̃_{t-1} enters step t, so only the embeddings' input gates are hoisted
        w_emb, w_rest = self._input_weights()
        gates = self._emb_gates(emb, w_emb)  # (B, T, G)
        if self._takes_fused(emb, memory):  # the loop below as one autograd node
            h_tilde, attention = kernels.LuongGRURecurrence.apply(
                gates, state.hidden[:, 0], state.input_feed, memory.projected, memory.states, memory.mask,
                self.attention.query_proj.weight, self.attention.v.weight.view(-1), w_rest,
                self.rnn.weight_hh_l0, self.rnn.bias_hh_l0, self.combine.weight)  # (B, T, O), (B, T, S)
            return self.dropout(h_tilde), attention
        features, weights = [], []
        for emb_t, gates_t in zip(emb.unbind(1), gates.unbind(1)):
            out = self._step(emb_t, gates_t, w_rest, state, memory)
            state = out.state
            features.append(out.features)  # (B, O)
            weights.append(out.attention)  # (B, S)
        return torch.stack(features, 1), torch.stack(weights, 1)  # (B, T, O), (B, T, S)

    @property
    def whole_sequence(self) -> bool:
        return not self.input_feeding

    @property
    def fused_recurrence(self) -> bool:
        """Input feeding, one GRU layer and additive attention, as the reference model (configs/bench_bible.yaml)
        has (`kernels.LuongGRURecurrence`)."""
        return (self.input_feeding and isinstance(self.attention, AdditiveAttention) and self.cell == "gru"
                and self.num_layers == 1)


DECODERS: dict[str, type[Decoder]] = {"bahdanau": BahdanauDecoder, "luong": LuongDecoder}
