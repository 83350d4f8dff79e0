"""Readers that turn files into (src, tgt) sentence pairs: two aligned text files, a TSV, or two SWORD Bibles.

Readers only read and, for the Bible, strip the markup a module carries. Filtering, deduplication and splitting
happen later in `mtkit.data.corpus`.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from mtkit.data.textio import read_lines
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

Pair = tuple[str, str]

# ---------------------------------------------------------------------------------------------------------------
# Plain text and TSV


def read_parallel_text(src_path: Path, tgt_path: Path) -> list[Pair]:
    """Return (src, tgt) pairs from two line-aligned UTF-8 text files, one sentence per line."""
    src_lines = read_lines(src_path)
    tgt_lines = read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise MtkitError(f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}; "
                         "the two files must be aligned line by line")
    if not any(s.strip() or t.strip() for s, t in zip(src_lines, tgt_lines)):
        raise MtkitError(f"{src_path} and {tgt_path}: no sentences (the files are empty or blank); "
                         "give files with one sentence per line")
    return list(zip(src_lines, tgt_lines))


def read_tsv(path: Path, src_column: int | str = 0, tgt_column: int | str = 1, header: bool = False) -> list[Pair]:
    """Return (src, tgt) pairs from two columns of a tab-separated UTF-8 file (no quoting; columns by index or name)."""
    lines = read_lines(path)
    first = 1 if header else 0
    names = lines[0].split("\t") if header and lines else []
    src_index = _column_index(path, src_column, names, header)
    tgt_index = _column_index(path, tgt_column, names, header)
    need = max(src_index, tgt_index) + 1
    pairs = []
    for number, line in enumerate(lines[first:], start=first + 1):
        fields = line.split("\t")
        if len(fields) < need:
            raise MtkitError(f"{path}, line {number}: {len(fields)} tab-separated column(s), need at least {need} "
                             f"(columns {src_index} and {tgt_index}, counting from 0); fix or remove the line")
        pairs.append((fields[src_index], fields[tgt_index]))
    if not pairs:
        raise MtkitError(f"{path}: no sentence pairs (the file is empty{' apart from its header' if header else ''})")
    return pairs


def _column_index(path: Path, column: int | str, names: list[str], header: bool) -> int:
    if isinstance(column, int):
        if column < 0:
            raise MtkitError(f"{path}: column index {column} is negative; columns count from 0")
        return column
    if not header:
        raise MtkitError(f"{path}: column {column!r} is a name, but the file is read without a header; "
                         "set header=True (data.tsv_header) or give the column as a number from 0")
    if column not in names:
        raise MtkitError(f"{path}: no column named {column!r} in the header; valid names: {', '.join(names)}")
    return names.index(column)


def line_refs(n_pairs: int, first_line: int = 1) -> list[str]:
    """Return the references of pairs read one per line: their line numbers, from `first_line` on.

    Line order then defines neighbours (`mtkit.data.corpus.consecutive_runs`): line 8 follows line 7.
    """
    return [str(number) for number in range(first_line, first_line + n_pairs)]


def read_tsv_refs(path: Path, ref_column: int | str | None = None, header: bool = False) -> list[str]:
    """Return the references of the pairs `read_tsv` reads: the values of `ref_column`, else the line numbers.

    A reference column should end each value in a number that counts up by one between neighbours ("Gen.1.1",
    "Gen.1.2"); line numbers count the header line too, so they are the numbers an editor shows.
    """
    if ref_column is None:
        return line_refs(len(read_tsv(path, 0, 0, header=header)), first_line=2 if header else 1)
    return [ref.strip() for ref, _ in read_tsv(path, ref_column, ref_column, header=header)]


# ---------------------------------------------------------------------------------------------------------------
# SWORD Bible modules


class BibleCorpus(NamedTuple):
    pairs: list[Pair]
    refs: list[str]  # "Gen 1:1", parallel to pairs
    dropped: dict[str, int]  # reason → number of verses


# Debian packages that install the modules named in docs/data.md.
DEBIAN_PACKAGES = {"spaRV1909eb": "sword-text-sparv", "engKJV2006eb": "sword-text-kjv",
                   "engWEB2015eb": "sword-text-web"}

# Chapters where the Reina-Valera module follows the Hebrew chapter breaks or shifts verses against KJV
# versification (docs/data.md, "Where the two versifications disagree"). Whole chapters are dropped.
MISALIGNED_CHAPTERS = frozenset({
    ("Num", 13), ("Num", 30), ("1Sam", 24), ("Job", 39), ("Job", 40), ("Hos", 12), ("Jonah", 2), ("1Kgs", 22),
    ("1Chr", 1), ("1Chr", 21), ("2Chr", 33), ("Judg", 14), ("2Cor", 13),
})

# Epistles whose last verse in Reina-Valera ends with a subscription ("Fué escrita de Corinto…").
_EPISTLES = ("Rom", "1Cor", "2Cor", "Gal", "Eph", "Phil", "Col", "1Thess", "2Thess", "1Tim", "2Tim", "Titus",
             "Phlm", "Heb")

# Hebrew letter names that prefix the stanzas of Psalm 119 (Spanish and English spellings).
_ACROSTIC = frozenset("ALEPH BETH GIMEL DALETH HE VAU WAW ZAIN ZAYIN CHETH HETH TETH JOD YOD CAPH KAPH LAMED MEM "
                      "NUN SAMECH AIN AYIN PE TZADDI TSADHE COPH KOPH QOPH RESH SIN SCHIN SHIN TAU TAV".split())


def read_bible(src_module: str = "spaRV1909eb", tgt_module: str = "engKJV2006eb",
               module_dir: Path | None = None) -> BibleCorpus:
    """Return verse-aligned (src, tgt) pairs from two SWORD Bible modules, cleaned as docs/data.md describes.

    Verses are aligned by (book, chapter, verse) of each module's versification. Dropped: verses in the chapters
    where Reina-Valera and KJV disagree ("misaligned_chapter"), verses empty on either side after cleaning
    ("empty"), and verse slots only one module has ("missing": e.g. the extra books of engWEB2015eb, whose NRSVA
    versification also differs from KJV in places). Duplicates are left to `mtkit.data.corpus.clean`.
    """
    start = time.perf_counter()
    src = _read_module(src_module, module_dir)
    tgt = _read_module(tgt_module, module_dir)
    dropped = Counter({"misaligned_chapter": 0, "empty": 0, "missing": 0})
    pairs, refs = [], []
    for key in src.keys() | tgt.keys():
        if key not in src or key not in tgt:
            dropped["missing"] += 1
    for key, src_text in src.items():  # module order: books, chapters, verses
        if key not in tgt:
            continue
        book, chapter, verse = key
        if (book, chapter) in MISALIGNED_CHAPTERS:
            dropped["misaligned_chapter"] += 1
        elif not src_text or not tgt[key]:
            dropped["empty"] += 1
        else:
            pairs.append((src_text, tgt[key]))
            refs.append(f"{book} {chapter}:{verse}")
    log.info("read %d verse pairs from %s and %s in %.1f s (dropped: %s)", len(pairs), src_module, tgt_module,
             time.perf_counter() - start, ", ".join(f"{k} {v}" for k, v in dropped.items()))
    return BibleCorpus(pairs, refs, dict(dropped))


def bible_module_files(src_module: str = "spaRV1909eb", tgt_module: str = "engKJV2006eb",
                       module_dir: Path | None = None) -> list[Path]:
    """Return the files (conf and text data) the two modules are read from, for fingerprinting."""
    files = []
    for module in (src_module, tgt_module):
        root, name, conf = _find_module(module, module_dir)
        files += [p for p in (root / "mods.d").glob("*.conf") if p.stem.lower() == name.lower()]
        data_dir = root / conf["datapath"]
        files += sorted(p for p in data_dir.iterdir() if p.is_file()) if data_dir.is_dir() else []
    return files


def sword_dirs(module_dir: Path | None = None) -> list[Path]:
    """Return the SWORD directories to search: module_dir alone, else $SWORD_PATH, ~/.sword, /usr/share/sword."""
    if module_dir is not None:
        return [Path(module_dir)]
    dirs = [Path(p) for p in os.environ.get("SWORD_PATH", "").split(os.pathsep) if p]
    return dirs + [Path.home() / ".sword", Path("/usr/share/sword")]


def _find_module(module: str, module_dir: Path | None) -> tuple[Path, str, dict[str, str]]:
    """Return the SWORD directory that holds `module`, the module's exact name and its parsed conf."""
    from pysword.modules import SwordModules

    searched = sword_dirs(module_dir)
    for root in searched:
        if (root / "mods.d").is_dir():
            for name, conf in SwordModules(str(root)).parse_modules().items():
                if name.lower() == module.lower():  # SWORD module names are case-insensitive
                    return root, name, conf
    package = DEBIAN_PACKAGES.get(module)
    how = (f"install it with `apt-get install {package}`" if package else
           f"install a SWORD module of that name (known here: {', '.join(DEBIAN_PACKAGES)})")
    raise MtkitError(f"SWORD module {module!r} not found in {', '.join(str(d) for d in searched)}; {how}, "
                     "or point data.module_dir (or $SWORD_PATH) at the directory that holds mods.d/")


def _read_module(module: str, module_dir: Path | None) -> dict[tuple[str, int, int], str]:
    """Return {(book, chapter, verse): cleaned text} for every verse slot of the module's versification."""
    from pysword.modules import SwordModules

    root, name, _ = _find_module(module, module_dir)
    modules = SwordModules(str(root))
    modules.parse_modules()
    try:
        bible = modules.get_bible_from_module(name)
    except (OSError, ValueError) as err:
        raise MtkitError(f"SWORD module {name} in {root} cannot be opened ({err}); reinstall it") from None
    # pysword decompresses the whole book block again for every verse (about a minute per module); verses are
    # read in order, so caching the last few blocks makes a full read take about a second.
    bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    verses: dict[tuple[str, int, int], str] = {}
    for books in bible.get_structure().get_books().values():
        for book in books:
            for chapter, n_verses in enumerate(book.chapter_lengths, start=1):
                texts = list(bible.get_iter(books=book.osis_name, chapters=chapter, clean=False))
                if len(texts) != n_verses:
                    raise MtkitError(f"SWORD module {name}: {book.osis_name} {chapter} has {len(texts)} verses, "
                                     f"its versification says {n_verses}; the module may be damaged, reinstall it")
                for verse, raw in enumerate(texts, start=1):
                    verses[(book.osis_name, chapter, verse)] = clean_verse(raw)
    _strip_psalm_titles(verses)
    _strip_acrostics(verses)
    _strip_subscriptions(verses)
    _recase_chapter_openings(verses)
    return verses


# --- cleaning one verse of OSIS markup ------------------------------------------------------------------------

_BOOK_END = re.compile(r'<div\b(?=[^>]*\beID=)(?=[^>]*\btype="book")[^>]*/>')
_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>", re.S)
_TITLE = re.compile(r"<title\b[^>]*/>|<title\b[^>]*>.*?</title>", re.S)
# A lone inline tag between two letters splits a word ("give</w>n"): remove it. Every other tag separates
# words ("God</w><note…/><w>created", "allí</w><transChange>también"): replace it with a space.
_TAG_IN_WORD = re.compile(r"<(?<=[^\W_]<)/?(?:w|transChange|divineName|hi|foreign|seg|name|q|rdg)\b[^>]*>(?=[^\W_])")
_TAG = re.compile(r"<[^>]*>")
_ENCLITIC = re.compile(r'(\w+)</w><transChange\b[^>]*>(le|les|lo|los|la|las|me|te|se|nos|os)</transChange>')
_CODE = re.compile(r"\\\+?[a-z]+\d*\*?")  # USFM character codes left in the text: \nd, \+nd*, \nd*
_SPACE_BEFORE = re.compile(r" (?=[.,;:!?)’”])")  # whitespace is single spaces by then
_SPACE_AFTER = re.compile(r"([(¿¡‘“]) ")
_INTERROGATIVES = frozenset("cuánto cuánta cuántos cuántas qué cómo dónde cuándo quién quiénes cuál cuáles"
                            .split())
_SHORT_VERBS = frozenset("di dí da dá haz ve pon ten sal dió vió".split())


def clean_verse(raw: str) -> str:
    """Return the plain text of one verse of OSIS markup: no notes, titles, tags, codes, ¶ or brackets; NFC."""
    end = _BOOK_END.search(raw)
    if end:
        raw = raw[:end.end()]  # WEB keeps a glossary in Rev 22:21 after the end-of-book marker
    if "</w><transChange" in raw:  # cheap test first: the pattern is slow and rare
        raw = _ENCLITIC.sub(_join_enclitic, raw)
    raw = _NOTE.sub(" ", raw)
    raw = _TITLE.sub(" ", raw)
    raw = _TAG_IN_WORD.sub("", raw)
    text = html.unescape(_TAG.sub(" ", raw))
    text = _CODE.sub(" ", text)
    text = text.replace("¶", " ").replace("[", "").replace("]", "")
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split())
    text = _SPACE_BEFORE.sub("", text)
    text = _SPACE_AFTER.sub(r"\1", text)
    # One quote convention: straight ASCII quotes (after the spacing above, which needs to know open from close).
    return text.translate(_QUOTES)


_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})


def _join_enclitic(match: re.Match) -> str:
    """Reina-Valera marks an added enclitic pronoun as a separate element ("alabad</w><transChange>le"); join it."""
    word, pronoun = match.group(1), match.group(2)
    lower = word.lower()
    accented_inside = any(c in "áéíóú" for c in lower[:-1])
    verb_like = (lower in _SHORT_VERBS or lower.endswith(("r", "d", "ndo"))
                 or (accented_inside and lower not in _INTERROGATIVES))
    # The closing tag stays, so the pronoun is not glued to the word after it.
    return f"{word}{pronoun}</transChange>" if verb_like else f"{word} {pronoun}</transChange>"


# --- cleaning that needs the verse's place in the book ---------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+")


def _caps_run(text: str) -> tuple[int, int] | None:
    """Return the (start, end) span of the first run of capitalised words that holds one of two or more letters.

    The run starts at any single capital letters just before that word ("A TI", "Y Á SUS").
    """
    words = list(_WORD.finditer(text))
    anchor = next((i for i, w in enumerate(words) if len(w.group()) >= 2 and w.group().isupper()), None)
    if anchor is None:
        return None
    first = anchor
    while first > 0 and len(words[first - 1].group()) == 1 and words[first - 1].group().isupper() \
            and not text[words[first - 1].end():words[first].start()].strip(" ¿¡"):
        first -= 1
    last = anchor
    while last + 1 < len(words) and words[last + 1].group().isupper() \
            and not text[words[last].end():words[last + 1].start()].strip(" ,"):
        last += 1
    return words[first].start(), words[last].end()


def _strip_psalm_titles(verses: dict) -> None:
    """Remove the Psalm title that Reina-Valera prints inside verse 1, before the capitalised first word.

    English modules keep titles in <title> elements, already gone. "Aleluya." stays: KJV has "Praise ye the
    LORD." inside the verse too.
    """
    for (book, chapter, verse), text in verses.items():
        if book != "Ps" or verse != 1:
            continue
        span = _caps_run(text)
        if span is None or span[0] == 0:
            continue
        prefix = text[:span[0]].rstrip(" ¿¡")
        if prefix and prefix != "Aleluya." and prefix[-1] in ".:?!":
            verses[(book, chapter, verse)] = text[len(prefix):].lstrip()


def _strip_acrostics(verses: dict) -> None:
    """Remove the Hebrew letter names (ALEPH, BETH, …) that head the stanzas of Psalm 119."""
    for key, text in verses.items():
        if key[0] == "Ps" and key[1] == 119:
            first, _, rest = text.partition(" ")
            if first.rstrip(".") in _ACROSTIC and rest:
                verses[key] = rest


def _strip_subscriptions(verses: dict) -> None:
    """Remove the closing subscription ("Fué escrita de Corinto…") after the final "Amén." of an epistle."""
    last: dict[str, tuple] = {}
    for key in verses:
        if key[0] in _EPISTLES:
            last[key[0]] = key
    for key in last.values():
        text = verses[key]
        head, amen, tail = text.rpartition("Amén.")
        if amen and re.search(r"\b(escrita|enviada)\b", tail, re.I):
            verses[key] = head + amen


def _recase_chapter_openings(verses: dict) -> None:
    """Re-case the capitalised opening words of each chapter ("EN el principio" → "En el principio").

    Each word takes its most frequent spelling in the rest of the module, so a word mostly written in capitals
    elsewhere (KJV's LORD, MENE) keeps them, while Reina-Valera's JEHOVÁ becomes Jehová. In verse 1 the run may
    follow a lead-in ("Las sentencias de Salomón. EL hijo…"); in other verses only a run that opens the verse
    counts (Luke 1:5, where the narrative starts after the prologue).
    """
    counts: Counter = Counter()
    for (_, _, verse), text in verses.items():
        if verse != 1:  # chapter openings are what we are fixing, not evidence
            counts.update(_WORD.findall(text))
    best: dict[str, tuple[int, str]] = {}  # lower-cased word → (count, most frequent spelling)
    bare: dict[str, tuple[int, str]] = {}  # the same, keyed without accents
    for form, n in counts.items():
        for table, key in ((best, form.lower()), (bare, _unaccent(form.lower()))):
            if (n, form) > table.get(key, (0, "")):
                table[key] = (n, form)
    for key, text in verses.items():
        span = _caps_run(text)
        if span is None or (key[2] != 1 and text[:span[0]].strip(" ¿¡")):
            continue
        start, end = span
        run = _WORD.sub(lambda m: _recase(m.group(), best, bare), text[start:end])
        before = text[:start].rstrip(" ¿¡")
        if not before or before[-1] in ".!?:":  # the run starts a sentence
            run = _capitalise_first(run)
        verses[key] = text[:start] + run + text[end:]


def _recase(word: str, best: dict[str, tuple[int, str]], bare: dict[str, tuple[int, str]]) -> str:
    """Return `word` in its most frequent spelling; a word seen only with other accents ("ACHAB" beside "Achâb")
    takes that spelling's case pattern; an unseen word becomes lower case."""
    if word.lower() in best:
        return best[word.lower()][1]
    seen = bare.get(_unaccent(word.lower()))
    if seen is None or seen[1].islower():
        return word.lower()
    return word if seen[1].isupper() else word.capitalize()


def _unaccent(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


def _capitalise_first(text: str) -> str:
    match = _WORD.search(text)
    if match is None:
        return text
    i = match.start()
    return text[:i] + text[i].upper() + text[i + 1:]
