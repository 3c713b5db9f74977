import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig

# U+2581 is SentencePiece's whitespace meta symbol and decodes as a space (documented exception).
plain_text = st.text(st.characters(blacklist_characters="\u2581", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(a=plain_text, b=plain_text)
def test_roundtrip_and_concatenation(text_tokenizer, a, b):
    ids_a, ids_b = text_tokenizer.encode(a), text_tokenizer.encode(b)
    assert text_tokenizer.decode(ids_a) == a
    # segments concatenate exactly: the sequence format relies on it
    assert text_tokenizer.decode(ids_a + ids_b) == a + b
    # byte fallback: nothing ever becomes <unk> (id 0)
    assert 0 not in ids_a


@pytest.mark.parametrize(
    "text", ["<image>", "</box>", "look <mask> here </audio>", "<eos><pad><bos>", "<unk>"]
)
def test_control_strings_are_plain_text(text_tokenizer, text):
    ids = text_tokenizer.encode(text)
    pieces = [text_tokenizer.piece(i) for i in ids]
    assert text not in pieces and "<unk>" not in pieces
    assert text_tokenizer.decode(ids) == text


def test_batch_and_save_load(tmp_path, text_tokenizer):
    texts = ["a red circle", "two blue squares", ""]
    assert text_tokenizer.encode_batch(texts) == [text_tokenizer.encode(t) for t in texts]
    assert text_tokenizer.decode_batch(text_tokenizer.encode_batch(texts)) == texts
    path = tmp_path / "text.model"
    text_tokenizer.save(path)
    loaded = TextTokenizer.load(path)
    assert loaded.fingerprint == text_tokenizer.fingerprint
    assert loaded.encode("a green star") == text_tokenizer.encode("a green star")


def test_train_from_text_files_bpe(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(builtin_corpus(800, seed=3)))
    tok = TextTokenizer.train([corpus], TextTokenizerConfig(vocab_size=400, model_type="bpe"))
    assert 256 < tok.vocab_size <= 400
    assert tok.decode(tok.encode("the purple diamond")) == "the purple diamond"


def test_errors(tmp_path, text_tokenizer):
    with pytest.raises(ValueError, match="empty corpus"):
        TextTokenizer.train([])
    with pytest.raises(FileNotFoundError, match="nope.model"):
        TextTokenizer.load(tmp_path / "nope.model")
    bad = tmp_path / "garbage.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="garbage.model: not a valid SentencePiece model"):
        TextTokenizer.load(bad)
    with pytest.raises(ValueError, match="out of range"):
        text_tokenizer.decode([text_tokenizer.vocab_size + 5])
    with pytest.raises(TypeError):
        text_tokenizer.encode(b"bytes")


# ---- issue #10 defect 11: the built-in corpus and the requested size ----


def _byte_pieces(tok: TextTokenizer, text: str) -> list[str]:
    return [p for p in (tok.piece(i) for i in tok.encode(text)) if p.startswith("<0x")]


@pytest.mark.parametrize(
    "text",
    [
        "objects",
        "jump",
        "quiz",
        "zebra",
        "xylophone",
        "the quick brown fox jumps over the lazy dog",
        "Pack my box with five dozen liquor jugs.",
        "a person is riding a bicycle next to a yellow taxi",
        "The kids enjoy a quiet walk by the frozen lake.",
    ],
)
def test_builtin_corpus_covers_ordinary_english(text_tokenizer, text):
    """Every letter of ordinary English words has a piece: no byte fallback ("objects" used "<0x6A>")."""
    assert not _byte_pieces(text_tokenizer, text), [
        text_tokenizer.piece(i) for i in text_tokenizer.encode(text)
    ]
    for letter in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        assert not _byte_pieces(text_tokenizer, letter), letter


def test_builtin_corpus_yields_the_requested_size(text_tokenizer):
    assert text_tokenizer.vocab_size == 1000  # was 604: the corpus was too narrow for the request


def test_builtin_corpus_is_deterministic_and_fast():
    import time

    start = time.perf_counter()
    corpus = builtin_corpus()
    assert time.perf_counter() - start < 1.0
    assert corpus == builtin_corpus() and corpus != builtin_corpus(seed=1)


def test_smaller_vocab_warns_or_fails_saying_why():
    corpus = ["a red circle", "a blue square", "two green stars"] * 20
    with pytest.warns(UserWarning, match=r"600 pieces requested, got \d+.*corpus"):
        tok = TextTokenizer.train(corpus, TextTokenizerConfig(vocab_size=600))
    assert tok.vocab_size < 600
    with pytest.raises(ValueError, match=r"600 pieces requested, got \d+.*allow_smaller_vocab"):
        TextTokenizer.train(corpus, TextTokenizerConfig(vocab_size=600, allow_smaller_vocab=False))
