"""Text tokenizer: a SentencePiece model whose ids are the local ids of the vocabulary's `text` segment.

Choices, and why:
- byte fallback: any character outside the learned pieces becomes UTF-8 byte pieces, so no input
  ever turns into <unk>.
- identity normalisation, no whitespace collapsing: `decode(encode(s)) == s` for every string, which
  the sequence format's round-trip guarantee relies on.
- no control symbols inside SentencePiece (no bos/eos/pad, no user-defined symbols): all control
  tokens live in the vocabulary's `special` segment, so user text that contains "<image>" or "</box>"
  is encoded as ordinary pieces and can never inject a control token.
- no dummy prefix: the ids of two strings, concatenated, decode to the two strings concatenated.
  The one lossy character is U+2581 ("▁"), SentencePiece's whitespace meta symbol: it decodes as a space.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from unio.atomic import atomic_write_bytes


@dataclass
class TextTokenizerConfig:
    vocab_size: int = 8000
    model_type: str = "unigram"  # "unigram" or "bpe"
    character_coverage: float = 0.9995  # rare characters go to byte fallback instead of pieces
    max_sentences: int = 2_000_000  # sampled from the corpus when it is larger
    split_digits: bool = True  # one piece per digit: numbers stay compositional
    # When the corpus is too small for `vocab_size` pieces: True = train a smaller model and warn
    # (UserWarning naming both sizes and why); False = fail with a ValueError.
    allow_smaller_vocab: bool = True

    def __post_init__(self) -> None:
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"text tokenizer model_type must be 'unigram' or 'bpe', got {self.model_type!r}")
        if self.vocab_size < 260:
            raise ValueError(
                f"text tokenizer vocab_size must be >= 260 (256 byte pieces + a few), got {self.vocab_size}"
            )


class TextTokenizer:
    """Thin, typed wrapper around a SentencePiece processor."""

    def __init__(self, model_proto: bytes, source: str = "<bytes>"):
        self._proto = model_proto
        self.source = source
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except Exception as err:  # SentencePiece raises RuntimeError/OSError with C++ messages
            raise ValueError(f"{source}: not a valid SentencePiece model ({err})") from None
        if self._sp.bos_id() >= 0 or self._sp.eos_id() >= 0 or self._sp.pad_id() >= 0:
            raise ValueError(
                f"{source}: SentencePiece model defines bos/eos/pad pieces; unio keeps control tokens in "
                "the vocabulary's special segment. Train it with TextTokenizer.train."
            )

    # ----------------------------------------------------------------------------- training
    @classmethod
    def train(
        cls, texts: Iterable[str] | Sequence[str | os.PathLike], config: TextTokenizerConfig | None = None
    ) -> TextTokenizer:
        """Train from an iterable of strings, or from a list of text-file paths (one sentence per line)."""
        config = config or TextTokenizerConfig()
        sentences = list(_iter_sentences(texts))
        if not sentences:
            raise ValueError("cannot train a text tokenizer on an empty corpus")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            input_sentence_size=config.max_sentences,
            shuffle_input_sentence=True,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,  # so decode(a_ids + b_ids) == a + b: segments concatenate exactly
            allow_whitespace_only_pieces=True,
            split_digits=config.split_digits,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,  # a short corpus gives fewer pieces; checked below, with our message
            num_threads=1,  # deterministic piece set; training on a 2-core laptop is seconds anyway
            minloglevel=2,
        )
        tokenizer = cls(model.getvalue(), source="<trained>")
        if tokenizer.vocab_size < config.vocab_size:
            message = (
                f"text tokenizer: {config.vocab_size} pieces requested, got {tokenizer.vocab_size}: the "
                f"training corpus ({len(sentences)} sentences, {sum(map(len, sentences))} characters, "
                f"{len({c for s in sentences for c in s})} distinct characters) has too few distinct "
                "substrings for more pieces (256 of them are byte-fallback pieces). Train on a larger "
                "corpus or ask for a smaller vocab_size"
            )
            if not config.allow_smaller_vocab:
                raise ValueError(f"{message} (allow_smaller_vocab=false)")
            warnings.warn(f"{message}; continuing with the smaller vocabulary", UserWarning, stacklevel=2)
        return tokenizer

    # ----------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, self._proto)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        return cls(path.read_bytes(), source=str(path))

    # ----------------------------------------------------------------------------- API
    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self._proto).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"text ids out of range [0, {self.vocab_size}): {bad[:5]}")
        return self._sp.decode(ids)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))


def _iter_sentences(texts: Iterable[str] | Sequence[str | os.PathLike]) -> Iterator[str]:
    for item in texts:
        if isinstance(item, Path) or (isinstance(item, str) and _looks_like_file(item)):
            path = Path(item)
            with path.open(encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    if "\x00" in line:
                        raise ValueError(f"{path}:{line_no}: NUL byte in training text")
                    if line:
                        yield line
        elif isinstance(item, str):
            if item:
                yield item
        else:
            raise TypeError(f"training texts must be strings or paths, got {type(item).__name__}")


def _looks_like_file(item: str) -> bool:
    return "\n" not in item and len(item) < 4096 and item.endswith((".txt", ".text")) and Path(item).is_file()
