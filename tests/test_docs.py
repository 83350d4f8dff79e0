"""The README and docs/ say what the code and the records say: generated pages are current, the README's study
table matches the run's record, links resolve, every record is indexed, and known kinds of stale statement
cannot come back. (The site itself is built with `mkdocs build --strict` in .ci/run and `make docs`.)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered():
    return gen_docs().render(ROOT)


def test_generated_pages_are_up_to_date(rendered, tmp_path):
    """Generate every page into a temporary directory and compare with what is committed."""
    import typer

    stale = []
    for rel, text in rendered.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
        committed = (ROOT / rel).read_text(encoding="utf-8")
        if committed == text:
            continue
        if rel == "docs/cli.md" and f"typer {typer.__version__})" not in committed:
            continue  # written by another typer, whose Markdown differs in form; the names are checked below
        stale.append(rel)
    assert not stale, f"out of date: {stale}; run python scripts/gen_docs.py and commit the result"


def test_cli_reference_names_every_command_and_option():
    import typer
    from mtkit.cli import app

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `mtkit {name}`" in page, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert re.search(rf"`(-\w, )?{re.escape(opt)}\b", page), f"mtkit {name} {opt}"


def test_configuration_reference_gives_every_key_a_type_default_and_meaning():
    from mtkit.config import Config, ServeConfig

    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w.]+)` \|.*\|$", page, re.M)}

    def keys(cls, prefix):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                yield from keys(f.default_factory, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    for key in [*keys(Config, ""), *keys(ServeConfig, "serve.")]:
        assert key in rows, f"{key} missing from docs/configuration.md"
        cells = [c.strip() for c in rows[key].strip("|").split(" | ")]
        assert all(cells[i] for i in (1, 2, 4)), f"{key}: empty type, default or meaning: {rows[key]}"


def _readme_study_rows() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- BEGIN generated: study-headline")[1].split("<!-- END generated: study-headline")[0]
    return {cells[0]: cells[1:] for line in block.splitlines() if line.startswith("| RNN") or
            line.startswith("| Transformer") for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_readme_study_table_matches_the_runs_record():
    """Read the README's table back and compare every number with the JSON records, independently of gen_docs."""
    passages = json.loads((DOCS / "length_study_passages_scores.json").read_text())["systems"]
    test = {s["name"]: s for s in json.loads((DOCS / "length_study_scores.json").read_text())["systems"]}
    rows = _readme_study_rows()
    names = {"rnnencdec": "RNNencdec", "rnnsearch": "RNNsearch", "transformer": "Transformer"}
    assert set(rows) == {names[s["name"]] for s in passages}
    for system in passages:
        cells = rows[names[system["name"]]]
        bleu, chrf = (float(x) for x in cells[0].split(" / "))
        assert (bleu, chrf) == (round(test[system["name"]]["bleu"], 2), round(test[system["name"]]["chrf"], 2))
        for p, cell in zip(system["paired"], cells[1:], strict=True):
            numbers = [float(x) for x in re.findall(r"\d+\.\d+", cell)]
            assert numbers[0] == round(p["bleu"], 1), cell
            if p["k"] > 1:
                assert numbers[1:] == [round(p["ratio"], 3), round(p["ci_low"], 3), round(p["ci_high"], 3)], cell


def test_readme_headline_numbers_of_the_brief():
    """The current run's k=4 ratios, as the issue quotes them, are what the README shows."""
    rows = _readme_study_rows()
    assert "×0.816 [0.782, 0.851]" in rows["RNNencdec"][-1]
    assert "×1.006 [0.989, 1.023]" in rows["RNNsearch"][-1]
    assert "×0.771 [0.754, 0.791]" in rows["Transformer"][-1]


def test_readme_is_short_and_types_no_figure_by_hand():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    outside = re.sub(r"<!-- BEGIN generated: (\S+).*?<!-- END generated: \1 -->", "", text, flags=re.S)
    outside = re.sub(r"```.*?```", "", outside, flags=re.S)  # commands and code
    # a measured figure (a decimal, a percentage, a time) belongs in a generated block, where a script writes it
    typed = re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])|\d+(?:\.\d+)?\s?%|\d+\s?min\b", outside)
    assert not typed, f"figures typed by hand in README.md outside generated blocks: {typed}"


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [m.group(1) for m in re.finditer(r"\]\(([^)\s]+)\)", text)]


def test_readme_links_resolve():
    for link in _links(README):
        if "://" in link or link.startswith("#"):
            continue
        assert (ROOT / link.split("#")[0]).exists(), link


def test_records_index_lists_every_record_and_nothing_else():
    index = DOCS / "records" / "index.md"
    text = index.read_text(encoding="utf-8")
    covered: set[Path] = set()
    for m in re.finditer(r"\[([^\]]+)\]\(([^)#\s]+)(#[^)]*)?\)", text):
        label, target = m.group(1), (index.parent / m.group(2)).resolve()
        if "://" in m.group(2) or m.group(2).endswith(".md") and not target.is_relative_to(DOCS.resolve() / "records"):
            continue
        assert target.exists(), f"records/index.md names {m.group(2)}, which is not there"
        covered.add(target.parent if label.endswith("/") else target)  # "folder/": the folder's every file
    for path in (DOCS / "records").rglob("*"):
        if path.is_file() and path != index:
            assert path.resolve() in covered or path.parent.resolve() in covered, \
                f"{path.relative_to(DOCS)} is not in docs/records/index.md"


TEXT_FILES = [README, *DOCS.rglob("*.md"), *(ROOT / "tests").glob("*.py"), *(ROOT / "scripts").glob("*.py"),
              *(ROOT / "mtkit").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
RECORDS = DOCS / "records"


@pytest.mark.parametrize("path", [p for p in TEXT_FILES if RECORDS not in p.parents and p.name != "test_docs.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stale_statement_of_a_known_kind(path):
    """Each kind of mistake found once (issue 29) stays found: a cited file that is not in the repository, a command
    that runs a path outside it, the encoder called packed, and a path into docs/ that does not exist."""
    text = path.read_text(encoding="utf-8")
    for cited in re.findall(r"\b([A-Z][A-Z_]+\.md)\b", text):
        assert list(ROOT.glob(f"**/{cited}")), f"{path.name} cites {cited}, which is not in the repository"
    assert not re.search(r"`\.\./[^`]*`", text), f"{path.name} gives a command or path outside the repository"
    assert not re.search(r"run packed|runs packed", text), f"{path.name} says the encoder runs packed; it does not"
    for ref in re.findall(r"\bdocs/[\w./-]+\.(?:json|md|txt|png|jsonl)\b", text):
        assert (ROOT / ref).exists(), f"{path.name} names {ref}, which does not exist"


def test_seeds_table_reads_each_seed_record_and_names_steps_that_differ(tmp_path):
    """A seed recorded with the main run's figures gives no spread; one trained for other steps is named."""
    (tmp_path / "docs" / "records" / "seeds").mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "record_steps.py").write_text((ROOT / "scripts" / "record_steps.py").read_text())
    for name in ("length_study_passages_scores.json", "length_study.md"):
        (tmp_path / "docs" / name).write_text((DOCS / name).read_text())
    seeds = tmp_path / "docs" / "records" / "seeds"
    (seeds / "seed1_passages_scores.json").write_text((DOCS / "length_study_passages_scores.json").read_text())
    (seeds / "seed1_summary.md").write_text((DOCS / "length_study.md").read_text().replace("| 3328 (3328) |", "| 3000 (3000) |"))
    block = gen_docs().seeds_block(tmp_path, every_k=False)
    assert "| RNNencdec | 4 | 0.816 | 0.816 | 0.816 | 0.000 | 0.816 – 0.816 |" in block
    assert "| direction: RNNencdec k=4/k=1 interval wholly below 0.9 | PASS | PASS |" in block
    assert "Steps that differ from the main run's: seed 1: RNNencdec 3,000." in block
    assert gen_docs().seeds_block(tmp_path / "nowhere", every_k=False).startswith("No seed reruns recorded yet")
