"""Text-answer metrics: VQA accuracy, classification accuracy, ASR and OCR word and character error
rates, span-corruption exact match.

VQA accuracy is the official VQA evaluation (Antol et al. 2015; GT-Vision-Lab/VQA `vqaEval.py`),
written here because no maintained package provides it:
- answers are normalised (`normalize_vqa_answer`): newlines/tabs to spaces, strip, the official
  punctuation rule (a punctuation mark is deleted when it touches a space or the answer has a digit
  comma like `1,000`, else replaced by a space; periods not followed by a digit are deleted), lowercase,
  number words `none`/`zero`..`ten` to digits, articles `a an the` dropped, and the official map of
  apostrophe-less contractions (`dont` -> `don't`);
- with several reference answers (VQA has ten), an answer's accuracy is min(#matching humans / 3, 1)
  averaged over the 10-choose-9 subsets that leave one human out: with ten references and m matches
  it is 0, 0.3, 0.6, 0.9, 1.0 for m = 0, 1, 2, 3, >= 4;
- with one reference answer (generated QA such as the shapes world or easy-VQA) it is exact match of
  the normalised strings.
One deliberate difference: the official script normalises only when the ten references disagree
(relying on VQA's references being normalised already); we always normalise prediction and references,
as lmms-eval and LAVIS do, so `two` matches a reference `2`.

WER and CER come from `jiwer` (corpus level: total edits / total reference words or characters) after
the same normalisation on both sides (`ASR_TRANSFORM`): lowercase, remove punctuation (Unicode
category P, so `don't` -> `dont`, `well-known` -> `wellknown`), collapse runs of spaces, strip.
CER counts characters of that normalised text, spaces included (jiwer's convention). OCR
(`ocr_error_rates`) uses the same jiwer measures without lowercasing or removing punctuation: reading
"Cat" as "cat" is an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jiwer

# -- VQA ----------------------------------------------------------------------------------------------
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_PUNCT = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
_PERIOD_STRIP = re.compile(
    r"(?!<=\d)(\.)(?!\d)"
)  # the official pattern, verbatim: a period not before a digit
_COMMA_DIGITS = re.compile(r"(\d)(,)(\d)")


def normalize_vqa_answer(answer: str) -> str:
    """The official VQA answer normalisation (see the module docstring): `"Two dogs."` -> `"2 dogs"`."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_DIGITS.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def vqa_answer_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """One question's VQA accuracy: leave-one-out min(#matches / 3, 1) with several reference answers,
    exact match with one (both after `normalize_vqa_answer`)."""
    if isinstance(answers, str) or not answers:
        raise ValueError(f"vqa accuracy: reference answers must be a non-empty list, got {answers!r}")
    pred = normalize_vqa_answer(prediction)
    refs = [normalize_vqa_answer(a) for a in answers]
    if len(refs) == 1:
        return float(pred == refs[0])
    matches = sum(r == pred for r in refs)
    # Leaving out a matching human leaves matches - 1 others, any other human leaves all matches.
    return sum(min(1.0, (matches - (r == pred)) / 3.0) for r in refs) / len(refs)


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean VQA accuracy over questions: {"vqa_accuracy": ...}."""
    _check_lengths("vqa_accuracy", predictions, answers)
    scores = [vqa_answer_accuracy(p, a) for p, a in zip(predictions, answers)]
    return {"vqa_accuracy": sum(scores) / len(scores)}


# -- classification -----------------------------------------------------------------------------------
def normalize_label(label: str) -> str:
    """Case- and surrounding-whitespace-insensitive class names (inner whitespace collapsed)."""
    return " ".join(label.lower().split())


def classification_accuracy(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Fraction of predictions equal to the label after `normalize_label`: {"accuracy": ...}."""
    _check_lengths("classification_accuracy", predictions, labels)
    correct = sum(normalize_label(p) == normalize_label(t) for p, t in zip(predictions, labels))
    return {"accuracy": correct / len(labels)}


# -- ASR ----------------------------------------------------------------------------------------------
ASR_TRANSFORM = jiwer.Compose(
    [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
)


def normalize_transcript(text: str) -> str:
    """What WER and CER compare: `ASR_TRANSFORM` of the text (lowercase, no punctuation, single spaces)."""
    return ASR_TRANSFORM(text)


def _corpus_error_rates(where: str, refs: list[str], hyps: list[str]) -> dict[str, float]:
    """jiwer's corpus WER and CER of already normalised texts; a reference that normalised to nothing
    is an error (WER is undefined for it), an empty prediction is all deletions."""
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise ValueError(f"{where}: references {empty[:10]} are empty after normalisation")
    return {
        "wer": float(jiwer.process_words(refs, hyps).wer),
        "cer": float(jiwer.process_characters(refs, hyps).cer),
    }


def asr_error_rates(predictions: Sequence[str], transcripts: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER by jiwer after `normalize_transcript`: {"wer": ..., "cer": ...}. A reference
    that normalises to nothing is an error (WER is undefined for it); an empty prediction is all
    deletions."""
    _check_lengths("asr_error_rates", predictions, transcripts)
    refs = [normalize_transcript(t) for t in transcripts]
    hyps = [normalize_transcript(p) for p in predictions]
    return _corpus_error_rates("asr_error_rates", refs, hyps)


def ocr_error_rates(predictions: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """OCR: corpus CER and WER by jiwer, case-sensitive (the text must be read as written; only runs of
    whitespace are collapsed), and `exact_match`, the fraction of images read without an error."""
    _check_lengths("ocr_error_rates", predictions, texts)
    refs = [" ".join(t.split()) for t in texts]
    hyps = [" ".join(str(p or "").split()) for p in predictions]
    rates = _corpus_error_rates("ocr_error_rates", refs, hyps)
    return {**rates, "exact_match": sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs)}


# -- span corruption ----------------------------------------------------------------------------------
def span_exact_match(
    predictions: Sequence[dict[str, str]], spans: Sequence[dict[str, str]]
) -> dict[str, float]:
    """Span corruption: `span_exact_match` = fraction of reference spans (sentinel -> text) whose
    predicted text is equal after stripping surrounding whitespace; `example_exact_match` = fraction of
    examples with every span right and no extra sentinel."""
    _check_lengths("span_exact_match", predictions, spans)
    total = right = whole = 0
    for pred, ref in zip(predictions, spans):
        hits = sum(pred.get(k, "").strip() == v.strip() for k, v in ref.items())
        total += len(ref)
        right += hits
        whole += hits == len(ref) and set(pred) <= set(ref)
    return {"span_exact_match": right / max(total, 1), "example_exact_match": whole / len(spans)}


def _check_lengths(name: str, predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{name}: {len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError(f"{name}: nothing to score")
