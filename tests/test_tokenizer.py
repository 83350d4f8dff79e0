import pytest

from mtkit.data.synthetic import make_pairs
from mtkit.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, train_tokenizer
from mtkit.errors import MtkitError


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(300, task="substitute", vocab_size=30, seed=0)


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_round_trip_and_special_ids(pairs, joint, model_type, tmp_path):
    src, tgt = [s for s, _ in pairs], [t for _, t in pairs]
    tok = train_tokenizer(src, tgt, vocab_size=80, model_type=model_type, joint=joint)
    assert tok.joint is joint
    for text in tgt[:20]:
        assert tok.decode_tgt(tok.encode_tgt([text])[0]) == text
    ids = tok.encode_src(src[:50])
    assert all(i > EOS for seq in ids for i in seq)  # no special ids inside encoded text
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.encode_src(src[:5]) == tok.encode_src(src[:5])
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


def test_decode_drops_special_ids(pairs):
    tok = train_tokenizer([s for s, _ in pairs], [t for _, t in pairs], vocab_size=60)
    ids = tok.encode_tgt([pairs[0][1]])[0]
    assert tok.decode_tgt([BOS, *ids, EOS, PAD]) == pairs[0][1]


def test_empty_training_data_is_an_error():
    with pytest.raises(MtkitError, match="empty"):
        train_tokenizer(["", " "], [""], vocab_size=50)


def test_load_from_empty_dir_says_what_to_run(tmp_path):
    with pytest.raises(MtkitError, match="mtkit prepare"):
        Tokenizer.load(tmp_path)


def test_too_small_vocabulary_is_a_clear_error():
    texts = ["abcdefghijklmnopqrstuvwxyz " * 3] * 20
    with pytest.raises(MtkitError, match="tokenizer.vocab_size = 10"):
        train_tokenizer(texts, texts, vocab_size=10)
