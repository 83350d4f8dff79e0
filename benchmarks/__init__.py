"""Benchmarks of mtkit: a tool beside the package that times mtkit's own functions on this machine.

    python -m benchmarks CONFIG [--checkpoint PT] [--levers] [--profile N] [--attention-cost PNG] [--json OUT]
    python -m benchmarks.compile CONFIG CHECKPOINT

One module per job:

* `flops`          FLOPs per token counted from a model's weight shapes; the fp32 matmul peak
* `memory`         peak resident memory per phase; glibc's keeping of freed memory
* `timing`         training throughput (mtkit.train.train_step) and translation speed (mtkit.search.decode)
* `levers`         each speed lever of mtkit timed against its alternative, interleaved
* `transformer_levers` how the Transformer's attention is built: fused kernel, torch's module, the cache
* `attention_cost` decoding and training time on a grid of source × target lengths, fit and figure
* `report`         the plain-text table and the JSON file
* `run`            the whole benchmark in one process, in a fixed order (`run_bench`)
* `__main__`       the command line; `compile` a one-off check of torch.compile on the decoder step

Nothing in mtkit imports this package.
"""
