"""Print the training losses of tiny models, step by step, for a fixed seed: the same numbers before and after a change.

    PYTHONPATH=. python scripts/same_losses.py > after.txt
    PYTHONPATH=/tmp/base python scripts/same_losses.py > before.txt   # an export of the earlier commit

Three tiny RNNs on id-level sequence reversal, each with dropout and label smoothing so that every
fast path runs (the encoder's GRU layers, the decoders' recurrences, the additive score, the hashed
dropout and the chunked loss): RNNsearch (Bahdanau, additive attention), Luong with input feeding,
and RNNencdec (no attention). Only functions both sides of a refactor have are called.
"""

from __future__ import annotations

import random
import sys

import torch

from mtkit.config import AttentionConfig, ModelConfig, TrainConfig
from mtkit.data.batching import collate
from mtkit.model import build_model
from mtkit.train import make_optimizer, train_step

VARIANTS = {
    "rnnsearch": dict(decoder="bahdanau", attention=AttentionConfig(kind="additive", dim=24)),
    "luong": dict(decoder="luong", input_feeding=True, attention=AttentionConfig(kind="additive", dim=24)),
    "rnnencdec": dict(decoder="bahdanau", attention=AttentionConfig(kind="none")),
}


def losses(name: str, steps: int, seed: int = 0) -> list[float]:
    """Return the per-token training loss of each of `steps` Adam steps of the named variant."""
    torch.manual_seed(seed)
    cfg = ModelConfig(emb_dim=16, hidden_dim=24, dec_hidden_dim=32, out_dim=24, dropout=0.2, **VARIANTS[name])
    model = build_model(cfg, 20, 20)
    train_cfg = TrainConfig(lr=0.01)
    optimizer = make_optimizer(model, train_cfg)
    rng = random.Random(seed)
    src = [[rng.randrange(4, 20) for _ in range(rng.randint(3, 12))] for _ in range(2000)]
    tgt = [s[::-1] for s in src]
    out = []
    for _ in range(steps):
        batch = collate(src, tgt, rng.sample(range(len(src)), 48))
        loss, _ = train_step(model, optimizer, batch, clip=1.0, label_smoothing=0.1)
        out.append(loss)
    return out


def main(steps: int = 40) -> None:
    torch.set_num_threads(1)
    for name in VARIANTS:
        for step, loss in enumerate(losses(name, steps), 1):
            print(f"{name} {step} {loss!r}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
