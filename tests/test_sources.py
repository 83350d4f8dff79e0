import re
from pathlib import Path

import pytest

from mtkit.data import sources
from mtkit.data.sources import clean_verse, line_refs, read_bible, read_parallel_text, read_tsv, read_tsv_refs
from mtkit.errors import MtkitError


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- two text files --------------------------------------------------------------------------------------------

def test_parallel_text_reads_aligned_lines(tmp_path):
    src = write(tmp_path / "a.es", "hola mundo\nadiós\n".encode())
    tgt = write(tmp_path / "a.en", "hello world\ngoodbye\n".encode())
    assert read_parallel_text(src, tgt) == [("hola mundo", "hello world"), ("adiós", "goodbye")]


def test_parallel_text_handles_crlf_bom_and_no_final_newline(tmp_path):
    src = write(tmp_path / "a.es", b"\xef\xbb\xbfuno\r\ndos\r\n")
    tgt = write(tmp_path / "a.en", b"one\ntwo")
    assert read_parallel_text(src, tgt) == [("uno", "one"), ("dos", "two")]


def test_parallel_text_keeps_unicode_line_separators_inside_a_line(tmp_path):
    src = write(tmp_path / "a.es", "uno\u2028más\ndos\n".encode())  # str.splitlines would make this 3 lines
    tgt = write(tmp_path / "a.en", b"one\ntwo\n")
    assert len(read_parallel_text(src, tgt)) == 2


def test_parallel_text_mismatched_counts_name_both_files_and_counts(tmp_path):
    src = write(tmp_path / "a.es", b"uno\ndos\ntres\n")
    tgt = write(tmp_path / "a.en", b"one\ntwo\n")
    with pytest.raises(MtkitError) as err:
        read_parallel_text(src, tgt)
    message = str(err.value)
    assert str(src) in message and str(tgt) in message and "3" in message and "2" in message


def test_parallel_text_invalid_utf8_names_file_and_line(tmp_path):
    src = write(tmp_path / "a.es", b"uno\ndos\nca\xf1a\n")
    tgt = write(tmp_path / "a.en", b"one\ntwo\nthree\n")
    with pytest.raises(MtkitError, match=r"a\.es, line 3: not valid UTF-8"):
        read_parallel_text(src, tgt)


def test_parallel_text_empty_corpus(tmp_path):
    src = write(tmp_path / "a.es", b"")
    tgt = write(tmp_path / "a.en", b"")
    with pytest.raises(MtkitError, match="no sentences"):
        read_parallel_text(src, tgt)


def test_parallel_text_missing_file_names_it(tmp_path):
    tgt = write(tmp_path / "a.en", b"one\n")
    with pytest.raises(MtkitError, match=re.escape(str(tmp_path / "nope.es")) + ": no such file"):
        read_parallel_text(tmp_path / "nope.es", tgt)


# --- TSV -------------------------------------------------------------------------------------------------------

def test_tsv_by_index_and_by_header_name(tmp_path):
    path = write(tmp_path / "c.tsv", b"id\ten\tes\r\n1\thello\thola\r\n2\tbye\tadios\r\n")
    assert read_tsv(path, 2, 1, header=True) == [("hola", "hello"), ("adios", "bye")]
    assert read_tsv(path, "es", "en", header=True) == [("hola", "hello"), ("adios", "bye")]
    assert read_tsv(path)[0] == ("id", "en")  # without header the first line is data


def test_tsv_too_few_columns_names_file_and_line(tmp_path):
    path = write(tmp_path / "c.tsv", b"a\tb\nc\n")
    with pytest.raises(MtkitError, match=r"c\.tsv, line 2: 1 tab-separated column"):
        read_tsv(path)


def test_tsv_column_name_errors(tmp_path):
    path = write(tmp_path / "c.tsv", b"en\tes\nhello\thola\n")
    with pytest.raises(MtkitError, match="valid names: en, es"):
        read_tsv(path, "fr", "en", header=True)
    with pytest.raises(MtkitError, match="without a header"):
        read_tsv(path, "es", "en")


def test_tsv_header_only_is_empty(tmp_path):
    path = write(tmp_path / "c.tsv", b"en\tes\n")
    with pytest.raises(MtkitError, match="no sentence pairs"):
        read_tsv(path, header=True)


def test_tsv_references_from_a_column_or_line_numbers(tmp_path):
    path = write(tmp_path / "c.tsv", b"ref\ten\tes\r\nGen.1.1 \thello\thola\r\nGen.1.2\tbye\tadios\r\n")
    assert read_tsv_refs(path, "ref", header=True) == read_tsv_refs(path, 0, header=True) == ["Gen.1.1", "Gen.1.2"]
    assert read_tsv_refs(path, header=True) == ["2", "3"]  # the lines an editor shows, after the header
    assert read_tsv_refs(path) == ["1", "2", "3"] and len(read_tsv(path)) == 3
    with pytest.raises(MtkitError, match="valid names: ref, en, es"):
        read_tsv_refs(path, "verse", header=True)
    assert line_refs(3) == ["1", "2", "3"] and line_refs(2, first_line=5) == ["5", "6"]


# --- SWORD: verse cleaning (no modules needed) -------------------------------------------------------------------

def test_tags_become_spaces_so_words_do_not_glue():
    raw = ('<w lemma="strong:H0430">God</w><note placement="foot"><reference>1:1 </reference>Elohim</note>'
           '<w lemma="strong:H1254">created</w> the <w>earth</w>. <div eID="gen3" type="x-p"/>')
    assert clean_verse(raw) == "God created the earth."
    raw = '<w lemma="strong:H8033">allí</w><transChange type="added">también</transChange><w>bdelio</w>'
    assert clean_verse(raw) == "allí también bdelio"


def test_a_lone_tag_inside_a_word_is_removed():
    assert clean_verse("Take heed what ye hear: with what measure ye mete, it shall be <w>give</w>n") \
        .endswith("be given")


def test_titles_paragraph_marks_codes_brackets_and_quotes():
    raw = ('<title type="psalm">A Psalm of David.</title>¶ the \\nd <w>LORD</w></divineName> is [but] '
           '“ mine , ’ said <w>God</w>’s son')
    assert clean_verse(raw) == "the LORD is but \"mine,' said God's son"


def test_reina_valera_enclitic_pronoun_joins_its_verb():
    raw = ('<w>alabad</w><transChange type="added">le</transChange>, <w>siervos</w> y '
           '<w>gentes</w><transChange type="added">lo</transChange> <w>oyeron</w>')
    assert clean_verse(raw) == "alabadle, siervos y gentes lo oyeron"


def test_text_after_the_end_of_book_marker_is_dropped():
    raw = ('saints. Amen. <chapter eID="Rev.22"/> <div canonical="true" eID="g1" osisID="Rev" type="book"/> '
           '<div sID="g2" type="glossary"/> <title>Glossary</title> Abba is a Chaldee word')
    assert clean_verse(raw) == "saints. Amen."


def test_nfc():
    assert clean_verse("Jehova\u0301") == "Jehová"


def test_psalm_title_acrostic_subscription_and_chapter_capitals():
    verses = {
        ("Ps", 3, 1): "Salmo de David, cuando huía. ¡OH Jehová, cuánto!",
        ("Ps", 111, 1): "Aleluya. ALABARÉ á Jehová.",
        ("Ps", 119, 1): "ALEPH. BIENAVENTURADOS los perfectos.",
        ("Ps", 119, 9): "BETH ¿Con qué limpiará?",
        ("Rom", 16, 27): "Sea gloria. Amén. Fué escrita de Corinto.",
        ("Gen", 1, 1): "EN el principio.",
        ("Gen", 2, 1): "Y FUERON acabados.",
        ("Gen", 2, 2): "Oh en el LORD, the LORD, the Lord; MENE, MENE.",
        ("Judg", 5, 1): "LORD, when thou.",
    }
    sources._strip_psalm_titles(verses)
    sources._strip_acrostics(verses)
    sources._strip_subscriptions(verses)
    sources._recase_chapter_openings(verses)
    assert verses[("Ps", 3, 1)] == "¡Oh Jehová, cuánto!"
    assert verses[("Ps", 111, 1)] == "Aleluya. Alabaré á Jehová."  # KJV keeps "Praise ye the LORD." in the verse
    assert verses[("Ps", 119, 1)] == "Bienaventurados los perfectos."
    assert verses[("Ps", 119, 9)] == "¿Con qué limpiará?"
    assert verses[("Rom", 16, 27)] == "Sea gloria. Amén."
    assert verses[("Gen", 1, 1)] == "En el principio."
    assert verses[("Gen", 2, 1)] == "Y fueron acabados."
    assert verses[("Gen", 2, 2)] == "Oh en el LORD, the LORD, the Lord; MENE, MENE."  # mid-verse: untouched
    assert verses[("Judg", 5, 1)] == "LORD, when thou."  # mostly capitals elsewhere: kept


def test_missing_module_says_which_package_to_install(tmp_path):
    (tmp_path / "mods.d").mkdir()
    with pytest.raises(MtkitError, match="apt-get install sword-text-sparv"):
        read_bible("spaRV1909eb", "engKJV2006eb", module_dir=tmp_path)


# --- SWORD: the real modules -----------------------------------------------------------------------------------

HAVE_MODULES = all(Path(f"/usr/share/sword/mods.d/{m}.conf").is_file() for m in ("spaRV1909eb", "engKJV2006eb"))


@pytest.fixture(scope="module")
def bible():
    return read_bible("spaRV1909eb", "engKJV2006eb", Path("/usr/share/sword"))


@pytest.mark.skipif(not HAVE_MODULES, reason="SWORD modules spaRV1909eb and engKJV2006eb not installed "
                    "(apt-get install sword-text-sparv sword-text-kjv)")
def test_real_bible(bible):
    verses = dict(zip(bible.refs, bible.pairs))
    assert 30_000 <= len(bible.pairs) <= 31_500 and len(bible.refs) == len(bible.pairs)
    assert bible.dropped["misaligned_chapter"] > 300 and "Num 13:1" not in verses
    for src, tgt in bible.pairs:
        for text in (src, tgt):
            assert text and not any(c in text for c in "<>¶[]\\“”‘’"), text
    es, en = verses["Gen 1:1"]
    assert es == "En el principio crió Dios los cielos y la tierra."
    assert en == "In the beginning God created the heaven and the earth."
    assert verses["Ps 3:1"][0].startswith("¡Oh Jehová")  # title gone, capitals re-cased
    assert verses["Ps 3:1"][1].startswith("LORD, how are they increased")  # LORD is capitals everywhere
    assert verses["Ps 119:1"][0].startswith("Bienaventurados los perfectos")
    assert verses["Rom 16:27"][0].endswith("para siempre. Amén.")
    assert verses["Rom 16:27"][1].endswith("for ever. Amen.")
