"""Captioning metrics: BLEU-4, CIDEr-D and ROUGE-L from pycocoevalcap's scorers, against all references.

pycocoevalcap is the COCO caption evaluation code (tylin/coco-caption) on PyPI; its `Cider` scorer is
CIDEr-D (clipped n-gram counts, Gaussian length penalty sigma = 6, x10). We call the scorers directly
and never its `PTBTokenizer` (a Java subprocess running Stanford CoreNLP) or `Spice` (Java, and it
downloads CoreNLP models): nothing here needs Java or the network.

Java-free tokenisation (`tokenize_caption`), standing in for `PTBTokenizer -lowerCase` followed by
coco-caption's removal of its punctuation tokens (`'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;`):
1. lowercase;
2. split into tokens: words (letters, digits, underscore) that may contain inner hyphens, periods or
   slashes (`black-and-white`, `3.5`, `1/2`) and commas between digits (`1,000`); the clitics PTB
   splits off (`n't`, `'s`, `'re`, `'ve`, `'ll`, `'d`, `'m`: `don't` -> `do n't`, `dog's` -> `dog 's`);
   and any other single non-space character;
3. drop tokens made only of PTB's removed punctuation plus `"` (PTB turns it into `` `` `` / `''`),
   brackets `( ) { } [ ]` and standalone apostrophes;
4. join with single spaces.

How it differs from PTB (rare in captions): PTB keeps abbreviations with a final period (`e.g.`,
`mr.`) as one token, here the final period is dropped (`e.g`, `mr`); PTB keeps `[` `]` as `-LSB-`
`-RSB-` tokens, here they are dropped; PTB splits a few more contractions (`cannot` -> `can not`,
`gonna` -> `gon na`) and keeps apostrophe words like `o'clock` whole, here `o'clock` -> `o clock`;
PTB's Unicode normalisation (e.g. of curly quotes) is not reproduced (curly quotes stay tokens).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

# coco-caption's PUNCTUATIONS (pycocoevalcap/tokenizer/ptbtokenizer.py), as characters.
_DROP_CHARS = set(".?!,:;-'`\"()[]{}")
_TOKEN = re.compile(
    r"\w+(?=n't\b)"  # the stem before n't: do|n't, ca|n't
    r"|n't\b"
    r"|'(?:s|re|ve|ll|d|m)\b"  # PTB's clitics
    r"|\w+(?:(?:[-./]|(?<=\d),(?=\d))\w+)*"  # words with inner - . / and digit commas
    r"|\S"
)


def tokenize_caption(text: str) -> str:
    """The caption lowercased and tokenised PTB-style without Java (see the module docstring), tokens
    joined by single spaces: `"A dog's toy, isn't it?"` -> `"a dog 's toy is n't it"`."""
    tokens = _TOKEN.findall(text.lower())
    return " ".join(t for t in tokens if not set(t) <= _DROP_CHARS)


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 (closest reference length, as coco-caption), CIDEr-D and ROUGE-L of one caption
    per item against all of that item's references, after `tokenize_caption`.

    CIDEr-D's document frequencies come from the references of the evaluated items themselves (as in
    coco-caption), so it needs several items with different references to mean anything: for a single
    item every n-gram has idf 0 and CIDEr-D is 0. Returns `bleu_1` .. `bleu_4`, `cider`, `rouge_l`.
    """
    if len(predictions) != len(references):
        raise ValueError(f"caption_scores: {len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("caption_scores: no predictions to score")
    res, gts = {}, {}
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if isinstance(refs, str) or not refs:
            raise ValueError(
                f"caption_scores: references[{i}] must be a non-empty list of strings, got {refs!r}"
            )
        res[i] = [tokenize_caption(pred)]
        gts[i] = [tokenize_caption(r) for r in refs]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    return {
        **{f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)},
        "cider": float(cider),
        "rouge_l": float(rouge),
    }
