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
