"""The house runs one way: no module imports a module of a higher layer, and no imports go round in a circle.

The layers, bottom to top: this list is the source of truth, and the table "Where things live" in
docs/development.md (the house rules) is generated from it by scripts/gen_docs.py. A module may import its
own layer and the layers below it. Read with `ast`, so a lazy import inside a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mtkit"

LAYERS = [
    ["mtkit", "mtkit.errors", "mtkit.buckets"],  # plain values every layer shares
    ["mtkit.config", "mtkit.config.schema", "mtkit.config.load"],
    # no mtkit import: torch.distributed plumbing; the process settings main() and the benchmark apply
    ["mtkit.distributed", "mtkit.runtime"],
    ["mtkit.data", "mtkit.data.textio", "mtkit.data.sources", "mtkit.data.corpus", "mtkit.data.tokenizer",
     "mtkit.data.batching", "mtkit.data.synthetic"],
    # the fast paths, each beside the reference in the model files above it; one switch picks (MTKIT_KERNELS)
    ["mtkit.kernels", "mtkit.kernels.switch", "mtkit.kernels.native", "mtkit.kernels.attention",
     "mtkit.kernels.dropout", "mtkit.kernels.loss", "mtkit.kernels.recurrence"],
    ["mtkit.model", "mtkit.model.encoder", "mtkit.model.attention", "mtkit.model.decoder", "mtkit.model.transformer",
     "mtkit.model.seq2seq"],
    ["mtkit.prepare", "mtkit.search", "mtkit.loss", "mtkit.evaluate", "mtkit.results", "mtkit.plots",
     "mtkit.checkpoint", "mtkit.device", "mtkit.runs"],
    ["mtkit.optim", "mtkit.runlog", "mtkit.train", "mtkit.translate", "mtkit.forced"],
    ["mtkit.compare", "mtkit.alignment"],
    ["mtkit.cli", "mtkit.serve", "mtkit.serve.app", "mtkit.serve.service", "mtkit.serve.loading",
     "mtkit.serve.requests", "mtkit.serve.guard", "mtkit.serve.queue"],  # nothing imports these
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Return each mtkit module's imports of other mtkit modules."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name and t != "mtkit")
    return graph


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Return every import of a module from a higher layer."""
    return [f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]})"
            for a, targets in sorted(graph.items()) for b in sorted(targets) if LAYER[b] > LAYER[a]]


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Return, for every module on an import cycle, one such cycle."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            if start in graph[node]:
                found.append(" → ".join(path + [start]))
                break
            for nxt in graph[node] - seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return found


def test_every_module_has_a_layer():
    assert sorted(set(imports()) - set(LAYER)) == [], "add new modules to LAYERS (and to the README's table)"


def test_no_import_reaches_up_a_layer():
    assert upward(imports()) == []


def test_no_import_cycle():
    assert cycles(imports()) == []


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a made-up package with both faults is caught."""
    pkg = tmp_path / "mtkit"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from mtkit.data import corpus\n")  # up: config is below data
    (pkg / "data" / "corpus.py").write_text("def f():\n    import mtkit.config\n")  # lazy, and back: a cycle
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    graph = imports()
    assert upward(graph) == ["mtkit.config (layer 1) imports mtkit.data (layer 3)",
                             "mtkit.config (layer 1) imports mtkit.data.corpus (layer 3)"]
    assert "mtkit.config → mtkit.data.corpus → mtkit.config" in cycles(graph)
