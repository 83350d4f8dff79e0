"""The RNNs' recurrences with their backward pass written out: one autograd node per loop, not thousands.

Under autograd every step of a recurrence records some thirty small operations, and their backward
pays, at every step, for work that does not depend on the step: a weight-gradient product and sum
for each weight the step reads and, with attention, a (B, S, K) outer product summed into the
encoder states' gradient. Here each loop is one `torch.autograd.Function` whose backward walks the
steps once in reverse (backpropagation through time by hand), keeps for each step only the small
(B, ·) gradients the recurrence itself needs, and takes every weight's, the attention keys' and the
states' gradients after the loop, each in one product over all steps. A step's element-wise work
(the additive score, softmax and context; the GRU cell) runs in `native.c`'s fused loops where they
build, else in the same equations as torch ops.

* `AdditiveGRURecurrence`: RNNsearch's decoder (`BahdanauDecoder` with a GRU and `AdditiveAttention`):

      q_t = W_a s_{t-1};  e_ts = v_aᵀ tanh(q_t + k_s) (−inf on padding);  α_t = softmax(e_t);  c_t = Σ_s α_ts h_s
      gi = gates_t + W_c c_t;  gh = W_hh s_{t-1} + b_hh          (gates_t = W_e emb(y_{t-1}) + b_ih, given)
      r = σ(gi_r + gh_r);  z = σ(gi_z + gh_z);  n = tanh(gi_n + r ⊙ gh_n);  s_t = n + z ⊙ (s_{t-1} − n)

* `LuongGRURecurrence`: `LuongDecoder` with input feeding, a GRU and additive attention (the reference model);
* `GRULayerRecurrence`: one GRU layer of the encoder, both directions at once.

`tests/test_kernels.py` checks outputs and every gradient against autograd through the model files'
plain loops (the references) to 1e-5 in float32 and 1e-10 in float64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import mtkit.kernels.native as native
from mtkit.kernels.switch import compiled as compiled_for


class AdditiveGRURecurrence(torch.autograd.Function):
    """s (B, T, H), c (B, T, K) and α (B, T, S) for every target position; see the module docstring.

    Inputs: gates (B, T, 3H), the embeddings' share of the GRU's input gates; s0 (B, H);
    keys (B, S, A) = U_a h; states (B, S, K) = h; mask (B, S), True on real tokens; w_query (A, H);
    v (A,); w_context (3H, K); w_hh (3H, H); b_hh (3H,).
    """

    @staticmethod
    def forward(ctx: Any, gates: Tensor, s0: Tensor, keys: Tensor, states: Tensor, mask: Tensor,
                w_query: Tensor, v: Tensor, w_context: Tensor, w_hh: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, steps, three_h = gates.shape
        hidden = three_h // 3
        # time-major buffers, so that step t writes and reads contiguous (B, ·) rows; s0 leads the states,
        # so that every step's previous state is one view for the weight gradients after the backward loop
        s_buf = gates.new_empty(steps + 1, batch, hidden)
        s_buf[0] = s0
        s_all = s_buf[1:]
        c_all = gates.new_empty(steps, batch, states.size(2))
        alpha = gates.new_empty(steps, batch, states.size(1))
        rz_all = gates.new_empty(steps, batch, 2 * hidden)  # σ of the reset and update gates
        n_all = gates.new_empty(steps, batch, hidden)
        ghn_all = gates.new_empty(steps, batch, hidden)  # W_hn s_{t-1} + b_hn, which r multiplies
        q_all = gates.new_empty(steps, batch, w_query.size(0))
        compiled = compiled_for(gates, keys, states)  # native.c's loops, else the same in torch ops
        keys, states, mask = keys.contiguous(), states.contiguous(), mask.contiguous()
        buffer = None if compiled else keys.new_empty(keys.shape)  # (B, S, A), tanh(q_t + k) of the current step
        w_query_t, w_context_t, w_hh_t = _by_input(w_query, w_context, w_hh)
        s = s_buf[0]
        for t in range(steps):
            q = torch.mm(s, w_query_t, out=q_all[t])  # (B, A)
            _attend(compiled, q, keys, v, mask, states, alpha[t], c_all[t], buffer)
            gi = torch.addmm(gates[:, t], c_all[t], w_context_t)  # (B, 3H)
            gh = torch.addmm(b_hh, s, w_hh_t)  # (B, 3H)
            _gru_forward(compiled, gi, gh, s, rz_all[t], n_all[t], ghn_all[t], s_all[t])
            s = s_all[t]
        ctx.compiled = compiled
        ctx.save_for_backward(keys, states, mask, w_query, v, w_context, w_hh,
                              s_buf, c_all, alpha, rz_all, n_all, ghn_all, q_all)
        return s_all.transpose(0, 1), c_all.transpose(0, 1), alpha.transpose(0, 1)

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor | None, grad_c: Tensor | None,
                 grad_alpha: Tensor | None) -> tuple[Tensor | None, ...]:
        (keys, states, mask, w_query, v, w_context, w_hh,
         s_buf, c_all, alpha, rz_all, n_all, ghn_all, q_all) = ctx.saved_tensors
        s0, s_all = s_buf[0], s_buf[1:]
        steps, batch, hidden = s_all.shape
        d_gi = s_all.new_empty(steps, batch, 3 * hidden)
        d_gh = s_all.new_empty(steps, batch, 3 * hidden)
        d_context = s_all.new_empty(c_all.shape)  # (T, B, K), all of c_t's gradient
        d_query = s_all.new_empty(q_all.shape)  # (T, B, A)
        attention = _AttentionGradients(ctx.compiled, keys, v, mask, states)
        grad_s = None if grad_s is None else grad_s.transpose(0, 1)  # (T, B, H)
        grad_c = None if grad_c is None else grad_c.transpose(0, 1)  # (T, B, K)
        grad_alpha = None if grad_alpha is None else grad_alpha.transpose(0, 1)  # (T, B, S)
        d_s = s0.new_zeros(s0.shape)  # dL/ds_t flowing back from later steps
        compiled = ctx.compiled
        d_direct = torch.empty_like(s0)  # d_s ⊙ z, the part of ds_{t-1} that bypasses the gates
        for t in reversed(range(steps)):
            if grad_s is not None:
                d_s = d_s + grad_s[t]
            _gru_backward(compiled, d_s, s_buf[t], rz_all[t], n_all[t], ghn_all[t], d_gi[t], d_gh[t], d_direct)
            d_prev = torch.addmm(d_direct, d_gh[t], w_hh)  # (B, H)
            d_c = torch.mm(d_gi[t], w_context, out=d_context[t])  # (B, K)
            if grad_c is not None:
                d_c.add_(grad_c[t])
            d_alpha_in = None if grad_alpha is None else grad_alpha[t].contiguous()
            attention.step(q_all[t], alpha[t], d_c, d_alpha_in, d_query[t])
            d_s = d_prev.addmm_(d_query[t], w_query)
        s_prev_all = s_buf[:-1].flatten(0, 1)  # (T·B, H)
        d_gh_flat = d_gh.flatten(0, 1)  # (T·B, 3H)
        d_w_hh = d_gh_flat.t() @ s_prev_all
        d_b_hh = d_gh_flat.sum(0)
        d_w_context = d_gi.flatten(0, 1).t() @ c_all.flatten(0, 1)
        d_w_query = d_query.flatten(0, 1).t() @ s_prev_all
        return (d_gi.transpose(0, 1), d_s, attention.keys_grad(), attention.states_grad(alpha, d_context), None,
                d_w_query, attention.v_grad(), d_w_context, d_w_hh, d_b_hh)


class LuongGRURecurrence(torch.autograd.Function):
    """Luong et al.'s decoder with input feeding, GRU and additive attention, every target position; backward by hand.

    The equations of `LuongDecoder._step` (mtkit/model/decoder.py, the reference):

        gi = gates_t + W_f h̃_{t-1};  gh = W_hh s_{t-1} + b_hh;  s_t = GRU(gi, gh, s_{t-1})
        q_t = W_a s_t;  α_t = softmax(v_aᵀ tanh(q_t + k));  c_t = Σ_s α_ts h_s;  h̃_t = tanh(W_c [c_t; s_t])

    Inputs: gates (B, T, 3H); s0 (B, H); feed0 (B, O), h̃_0; keys (B, S, A); states (B, S, K); mask (B, S);
    w_query (A, H); v (A,); w_feed (3H, O); w_hh (3H, H); b_hh (3H,); w_combine (O, K + H).
    Returns h̃ (B, T, O), before dropout, and α (B, T, S).
    """

    @staticmethod
    def forward(ctx: Any, gates: Tensor, s0: Tensor, feed0: Tensor, keys: Tensor, states: Tensor, mask: Tensor,
                w_query: Tensor, v: Tensor, w_feed: Tensor, w_hh: Tensor, b_hh: Tensor,
                w_combine: Tensor) -> tuple[Tensor, Tensor]:
        batch, steps, three_h = gates.shape
        hidden, key_dim = three_h // 3, states.size(2)
        w_comb_c, w_comb_s = w_combine.split([key_dim, hidden], dim=1)  # (O, K), (O, H)
        s_buf = gates.new_empty(steps + 1, batch, hidden)  # s0, then every s_t (see AdditiveGRURecurrence)
        s_buf[0] = s0
        s_all = s_buf[1:]
        c_all = gates.new_empty(steps, batch, key_dim)
        h_buf = gates.new_empty(steps + 1, batch, w_combine.size(0))  # h̃_0, then every h̃_t
        h_buf[0] = feed0
        h_all = h_buf[1:]
        alpha = gates.new_empty(steps, batch, states.size(1))
        rz_all = gates.new_empty(steps, batch, 2 * hidden)
        n_all = gates.new_empty(steps, batch, hidden)
        ghn_all = gates.new_empty(steps, batch, hidden)
        q_all = gates.new_empty(steps, batch, w_query.size(0))
        compiled = compiled_for(gates, keys, states)
        keys, states, mask = keys.contiguous(), states.contiguous(), mask.contiguous()
        buffer = None if compiled else keys.new_empty(keys.shape)
        w_feed_t, w_hh_t, w_query_t, w_comb_c_t, w_comb_s_t = _by_input(w_feed, w_hh, w_query, w_comb_c, w_comb_s)
        s, feed = s_buf[0], h_buf[0]
        for t in range(steps):
            gi = torch.addmm(gates[:, t], feed, w_feed_t)  # (B, 3H)
            gh = torch.addmm(b_hh, s, w_hh_t)  # (B, 3H)
            _gru_forward(compiled, gi, gh, s, rz_all[t], n_all[t], ghn_all[t], s_all[t])
            s = s_all[t]
            q = torch.mm(s, w_query_t, out=q_all[t])  # (B, A), from s_t
            _attend(compiled, q, keys, v, mask, states, alpha[t], c_all[t], buffer)
            feed = torch.mm(c_all[t], w_comb_c_t, out=h_all[t]).addmm_(s, w_comb_s_t).tanh_()  # h̃_t
        ctx.compiled = compiled
        ctx.save_for_backward(keys, states, mask, w_query, v, w_feed, w_hh, w_combine,
                              s_buf, c_all, h_buf, alpha, rz_all, n_all, ghn_all, q_all)
        return h_all.transpose(0, 1), alpha.transpose(0, 1)

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor | None, grad_alpha: Tensor | None) -> tuple[Tensor | None, ...]:
        (keys, states, mask, w_query, v, w_feed, w_hh, w_combine,
         s_buf, c_all, h_buf, alpha, rz_all, n_all, ghn_all, q_all) = ctx.saved_tensors
        s0, s_all, feed0, h_all = s_buf[0], s_buf[1:], h_buf[0], h_buf[1:]
        steps, batch, hidden = s_all.shape
        key_dim = c_all.size(2)
        w_comb_c, w_comb_s = (w.contiguous() for w in w_combine.split([key_dim, hidden], dim=1))
        compiled = ctx.compiled
        d_gi = s_all.new_empty(steps, batch, 3 * hidden)
        d_gh = s_all.new_empty(steps, batch, 3 * hidden)
        d_pre = s_all.new_empty(h_all.shape)  # (T, B, O): through h̃'s tanh
        d_context = s_all.new_empty(c_all.shape)
        d_query = s_all.new_empty(q_all.shape)
        attention = _AttentionGradients(compiled, keys, v, mask, states)
        d_direct = torch.empty_like(s0)
        grad_h = None if grad_h is None else grad_h.transpose(0, 1)  # (T, B, O)
        grad_alpha = None if grad_alpha is None else grad_alpha.transpose(0, 1)
        d_s_next = s0.new_zeros(s0.shape)  # into s_t from step t + 1's GRU
        d_feed_next = feed0.new_zeros(feed0.shape)  # into h̃_t from step t + 1's input gates
        for t in reversed(range(steps)):
            d_h = d_feed_next if grad_h is None else d_feed_next + grad_h[t]
            h = h_all[t]
            torch.mul(d_h, 1 - h * h, out=d_pre[t])  # h̃ = tanh(pre)
            d_c = torch.mm(d_pre[t], w_comb_c, out=d_context[t])  # (B, K)
            d_s = torch.addmm(d_s_next, d_pre[t], w_comb_s)  # (B, H)
            d_alpha_in = None if grad_alpha is None else grad_alpha[t].contiguous()
            attention.step(q_all[t], alpha[t], d_c, d_alpha_in, d_query[t])
            d_s.addmm_(d_query[t], w_query)  # q_t = W_a s_t
            _gru_backward(compiled, d_s, s_buf[t], rz_all[t], n_all[t], ghn_all[t], d_gi[t], d_gh[t], d_direct)
            d_s_next = torch.addmm(d_direct, d_gh[t], w_hh)
            d_feed_next = torch.mm(d_gi[t], w_feed)  # (B, O)
        s_prev_all = s_buf[:-1].flatten(0, 1)  # (T·B, H)
        feed_prev_all = h_buf[:-1].flatten(0, 1)  # (T·B, O)
        d_gh_flat, d_pre_flat = d_gh.flatten(0, 1), d_pre.flatten(0, 1)
        s_flat = s_all.flatten(0, 1)
        d_w_combine = torch.cat([d_pre_flat.t() @ c_all.flatten(0, 1), d_pre_flat.t() @ s_flat], 1)  # (O, K + H)
        return (d_gi.transpose(0, 1), d_s_next, d_feed_next, attention.keys_grad(),
                attention.states_grad(alpha, d_context), None,
                d_query.flatten(0, 1).t() @ s_flat, attention.v_grad(), d_gi.flatten(0, 1).t() @ feed_prev_all,
                d_gh_flat.t() @ s_prev_all, d_gh_flat.sum(0), d_w_combine)


def _by_input(*weights: Tensor) -> tuple[Tensor, ...]:
    """Return each (out, in) weight transposed into a contiguous (in, out) copy, once per call, for the step loop.

    A step's x Wᵀ reads W along its rows when W is laid out (in, out) in memory, faster than through the
    transposed view; the copies are a few hundred KB a batch.
    """
    return tuple(w.t().contiguous() for w in weights)


def _gru_forward(compiled: bool, gi: Tensor, gh: Tensor, s_prev: Tensor, rz: Tensor, n: Tensor, ghn: Tensor,
                 s: Tensor) -> None:
    """torch's GRU cell from gate pre-activations gi, gh (N, 3H); writes rz (N, 2H), n, gh_n and s (N, H)."""
    if compiled:
        native.gru_forward(gi, gh, s_prev, rz, n, ghn, s)
        return
    hidden = s_prev.size(1)
    torch.add(gi[:, :2 * hidden], gh[:, :2 * hidden], out=rz).sigmoid_()
    ghn.copy_(gh[:, 2 * hidden:])
    torch.addcmul(gi[:, 2 * hidden:], rz[:, :hidden], ghn, out=n).tanh_()
    torch.addcmul(n, rz[:, hidden:], s_prev - n, out=s)  # (1 − z) n + z s_{t-1}


def _gru_backward(compiled: bool, d_s: Tensor, s_prev: Tensor, rz: Tensor, n: Tensor, ghn: Tensor, d_gi: Tensor,
                  d_gh: Tensor, d_direct: Tensor) -> None:
    """The GRU cell's backward for d_s (N, H): writes d_gi, d_gh (N, 3H) and d_direct = d_s ⊙ z (N, H)."""
    if compiled:
        native.gru_backward(d_s, s_prev, rz, n, ghn, d_gi, d_gh, d_direct)
        return
    hidden = s_prev.size(1)
    r, z = rz[:, :hidden], rz[:, hidden:]
    d_pre_n = d_s * (1 - z) * (1 - n * n)  # s_t = n + z (s_{t-1} − n); n = tanh(pre_n)
    d_gi[:, 2 * hidden:] = d_pre_n
    torch.mul(d_pre_n, r, out=d_gh[:, 2 * hidden:])
    torch.mul(d_pre_n * ghn, r * (1 - r), out=d_gi[:, :hidden])
    torch.mul(d_s * (s_prev - n), z * (1 - z), out=d_gi[:, hidden:2 * hidden])
    d_gh[:, :2 * hidden] = d_gi[:, :2 * hidden]
    torch.mul(d_s, z, out=d_direct)


class GRULayerRecurrence(torch.autograd.Function):
    """A GRU layer's recurrence over precomputed input gates, every direction at once, backward written out.

    gates (S, D, B, 3H): W_ih x + b_ih of each position, direction d's position j already in the order
    that direction reads; w_hh (D, H, 3H) (transposed weights); b_hh (D, 1, 3H). The state starts at zero.
    Returns the states (S, D, B, H). As with `AdditiveGRURecurrence`, the recurrent weights' gradients are
    one product over all steps after the loop, and each step's cell runs in `native.c` where it can.
    """

    @staticmethod
    def forward(ctx: Any, gates: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        steps, dirs, batch, three_h = gates.shape
        hidden = three_h // 3
        compiled = compiled_for(gates, w_hh)
        out_buf = gates.new_empty(steps + 1, dirs, batch, hidden)  # a zero state, then every step's
        out_buf[0] = 0
        out = out_buf[1:]
        rz_all = gates.new_empty(steps, dirs * batch, 2 * hidden)
        n_all = gates.new_empty(steps, dirs * batch, hidden)
        ghn_all = gates.new_empty(steps, dirs * batch, hidden)
        h = out_buf[0]
        for t in range(steps):
            gh = torch.baddbmm(b_hh, h, w_hh)  # (D, B, 3H)
            _gru_forward(compiled, gates[t].reshape(dirs * batch, three_h), gh.view(dirs * batch, three_h),
                         h.view(dirs * batch, hidden), rz_all[t], n_all[t], ghn_all[t], out[t].view(dirs * batch, hidden))
            h = out[t]
        ctx.compiled = compiled
        ctx.save_for_backward(w_hh, out_buf, rz_all, n_all, ghn_all)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        w_hh, out_buf, rz_all, n_all, ghn_all = ctx.saved_tensors
        steps, dirs, batch, hidden = out_buf[1:].shape
        rows = dirs * batch
        d_gi = out_buf.new_empty(steps, dirs, batch, 3 * hidden)
        d_gh = out_buf.new_empty(steps, dirs, batch, 3 * hidden)
        d_direct = out_buf.new_empty(rows, hidden)
        w_hh_t = w_hh.transpose(1, 2).contiguous()  # (D, 3H, H)
        d_h = out_buf.new_zeros(dirs, batch, hidden)
        for t in reversed(range(steps)):
            d_s = (d_h + grad_out[t]).view(rows, hidden)
            h_prev = out_buf[t].view(rows, hidden)
            _gru_backward(ctx.compiled, d_s, h_prev, rz_all[t], n_all[t], ghn_all[t], d_gi[t].view(rows, -1),
                          d_gh[t].view(rows, -1), d_direct)
            d_h = torch.baddbmm(d_direct.view(dirs, batch, hidden), d_gh[t], w_hh_t)  # (D, B, H)
        h_prev_all = out_buf[:-1]  # (S, D, B, H)
        d_gh_by_dir = d_gh.transpose(0, 1).reshape(dirs, steps * batch, 3 * hidden)
        d_w_hh = torch.bmm(h_prev_all.transpose(0, 1).reshape(dirs, steps * batch, hidden).transpose(1, 2),
                           d_gh_by_dir)  # (D, H, 3H)
        d_b_hh = d_gh_by_dir.sum(1, keepdim=True)  # (D, 1, 3H)
        return d_gi, d_w_hh, d_b_hh


def _attend(compiled: bool, q: Tensor, keys: Tensor, v: Tensor, mask: Tensor, states: Tensor, alpha: Tensor,
            context: Tensor, buffer: Tensor | None) -> None:
    """Additive attention for queries q (B, A): writes alpha (B, S) and context (B, K); buffer (B, S, A) for torch ops."""
    if compiled:
        native.additive_forward(q, keys, v, mask, states, alpha, context)
        return
    torch.add(q.unsqueeze(1), keys, out=buffer).tanh_()
    scores = torch.matmul(buffer, v).masked_fill_(~mask, float("-inf"))  # (B, S)
    alpha.copy_(scores.softmax(-1))
    torch.bmm(alpha.unsqueeze(1), states, out=context.unsqueeze(1))


class _AttentionGradients:
    """Additive attention's backward over the steps of a recurrence, run from the last step to the first.

    `step` writes a step's query gradient; the gradients of v, the keys and the states are taken after the
    loop. The keys' gradient is Σ_t v ⊙ (1 − tanh²(q_t + k)) ⊙ de_t, kept as Σ_t de_t (B, S) and
    Σ_t de_t tanh² (B, S, A), so no step writes a (B, S, A) gradient of its own.
    """

    def __init__(self, compiled: bool, keys: Tensor, v: Tensor, mask: Tensor, states: Tensor) -> None:
        self.compiled, self.keys, self.v, self.mask, self.states = compiled, keys, v, mask, states
        self.d_v_by_row = keys.new_zeros(keys.size(0), v.size(0)) if compiled else torch.zeros_like(v)  # (B, A) or (A,)
        self.de_sum = keys.new_zeros(keys.shape[:2])  # (B, S)
        self.de_tanh2 = torch.zeros_like(keys)  # (B, S, A)
        self.buffer = None if compiled else keys.new_empty(keys.shape)  # torch ops' tanh(q + k)

    def step(self, q: Tensor, alpha: Tensor, d_c: Tensor, d_alpha_in: Tensor | None, d_q: Tensor) -> None:
        """Backward of `_attend` for query q (B, A), weights alpha (B, S) and context gradient d_c: writes d_q."""
        if self.compiled:
            native.additive_backward(q, self.keys, self.v, self.mask, self.states, alpha, d_c, d_alpha_in, d_q,
                                     self.d_v_by_row, self.de_sum, self.de_tanh2)
        else:
            _additive_backward(q, self.keys, self.v, self.states, alpha, d_c, d_alpha_in, d_q, self.d_v_by_row,
                               self.de_sum, self.de_tanh2, self.buffer)

    def v_grad(self) -> Tensor:
        """Return v's gradient (A,) once every step is done (native.c keeps it by sentence: no two threads add to one sum)."""
        return self.d_v_by_row.sum(0) if self.compiled else self.d_v_by_row

    def keys_grad(self) -> Tensor:
        """Return the keys' gradient (B, S, A), v (Σ de − Σ de tanh²), once every step is done."""
        return self.de_tanh2.neg_().add_(self.de_sum.unsqueeze(2)).mul_(self.v)

    @staticmethod
    def states_grad(alpha: Tensor, d_context: Tensor) -> Tensor:
        """Return the states' gradient as values, Σ_t α_tᵀ d_c_t (B, S, K), from alpha (T, B, S), d_context (T, B, K)."""
        return torch.bmm(alpha.permute(1, 2, 0), d_context.transpose(0, 1))


def _additive_backward(q: Tensor, keys: Tensor, v: Tensor, states: Tensor, alpha: Tensor, d_c: Tensor,
                       d_alpha_in: Tensor | None, d_q: Tensor, d_v: Tensor, de_sum: Tensor, de_tanh2: Tensor,
                       buffer: Tensor) -> None:
    """`native.additive_backward` in torch ops: write d_q (B, A); add to d_v, de_sum and de_tanh2."""
    d_alpha = torch.bmm(states, d_c.unsqueeze(2)).squeeze(2)  # (B, S): dα = h d_c
    if d_alpha_in is not None:
        d_alpha = d_alpha + d_alpha_in
    d_e = alpha * (d_alpha - (alpha * d_alpha).sum(1, keepdim=True))  # softmax backward; 0 on padding
    torch.add(q.unsqueeze(1), keys, out=buffer).tanh_()  # e_s = v · tanh(q + k_s), recomputed
    d_v.addmv_(buffer.view(-1, buffer.size(2)).t(), d_e.reshape(-1))
    buffer.square_()  # tanh²
    weighted = torch.bmm(d_e.unsqueeze(1), buffer).squeeze(1)  # (B, A): Σ_s de_s tanh²
    torch.mul(v, d_e.sum(1, keepdim=True) - weighted, out=d_q)  # Σ_s de_s v (1 − tanh²)
    de_tanh2.addcmul_(buffer, d_e.unsqueeze(2))
    de_sum.add_(d_e)
