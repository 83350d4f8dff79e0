"""Fast paths behind one boundary, each beside the plain-torch reference it must equal; one switch picks.

The model files (`mtkit.model.encoder`, `.decoder`, `.attention`) and `mtkit.loss` hold the
reference: plain torch ops that read like the papers' equations, and what a reader reads to learn
the model. Each hands its work to one fast path here where the switch says *fused*:

* `GRULayerRecurrence` (encoder), `AdditiveGRURecurrence` (RNNsearch's decoder) and
  `LuongGRURecurrence` (Luong with input feeding): a whole recurrence as one autograd node whose
  backward is written out (`recurrence.py`);
* `additive_score`: Bahdanau's score, keeping no (B, T, S, A) tensor for backward (`attention.py`),
  and `additive_attention_step`: a search step's score, softmax and context in one C loop;
* `linear_cross_entropy`: the vocabulary projection and cross-entropy a chunk of rows at a time,
  never holding the (N, V) logits (`loss.py`);
* `Dropout`: masks from a counter-based hash, one pass, no mask kept (`dropout.py`).

Their element-wise inner loops run in `native.c` (built once per machine by `native.py`) where it
builds and the tensors are float32 on the CPU, else as the same equations in torch ops.

The switch: MTKIT_KERNELS=reference|fused in the environment (default fused), or `use(mode)` from
Python. `tests/test_kernels.py` holds every fused kernel equal to its reference: values, gradients
and NaN/inf, on one and two threads.
"""

from __future__ import annotations

import mtkit.kernels.native as native
from mtkit.kernels.attention import additive_attention_step, additive_score
from mtkit.kernels.dropout import Dropout
from mtkit.kernels.loss import linear_cross_entropy
from mtkit.kernels.recurrence import AdditiveGRURecurrence, GRULayerRecurrence, LuongGRURecurrence
from mtkit.kernels.switch import MODES, compiled, fused, mode, use, using

__all__ = ["MODES", "mode", "use", "using", "fused", "compiled", "native", "Dropout", "additive_score",
           "additive_attention_step", "linear_cross_entropy", "GRULayerRecurrence", "AdditiveGRURecurrence",
           "LuongGRURecurrence"]
