"""A small built-in English corpus, generated deterministically, so that a text tokenizer can be trained
with no downloads (the demo, tests, CPU smoke runs). It covers what unio's built-in data talks about:
colours, shapes, positions, counts, COCO category names, spoken digits, and instruction-style prompts.
Real runs train on their own captions/transcripts (see `unio-train-text-tokenizer`)."""

from __future__ import annotations

import random

COLOURS = (
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "white",
    "black",
    "gray",
    "brown",
    "pink",
    "cyan",
)
SHAPES = ("circle", "square", "triangle", "star", "diamond", "rectangle", "ellipse", "cross")
POSITIONS = (
    "left",
    "right",
    "top",
    "bottom",
    "center",
    "top left",
    "top right",
    "bottom left",
    "bottom right",
)
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COCO_CATEGORIES = tuple(
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,"
    "parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,handbag,"
    "tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,"
    "tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,"
    "hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,"
    "keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,"
    "hair drier,toothbrush".split(",")
)
PROMPTS = (
    "Describe the image.",
    "What is in this picture?",
    "Write a short caption for the image.",
    "Detect all objects in the image.",
    "Find every {obj} in the image.",
    'Which region does the text "{ref}" describe?',
    "Segment the {ref}.",
    "What is the {ref} in the highlighted region?",
    "Locate the keypoints of the person.",
    "Generate an image of {ref}.",
    "Transcribe the audio.",
    "Read the text aloud: {sentence}",
    "What digit is spoken in the audio?",
    "How many {shapes} are there?",
    "What colour is the {shape}?",
    "Is there a {colour} {shape} in the image?",
    "What class is this image?",
    "Fill in the missing spans.",
)
TEMPLATES = (
    "a {colour} {shape} on the {position}",
    "there are {number} {shapes} in the image",
    "the {colour} {shape} is to the {position} of the {colour2} {shape2}",
    "a photo of a {obj} next to a {obj2}",
    "a {obj} and {number} {obj2}",
    "the {obj} is in the {position} of the picture",
    "the number {digit} is {number}",
    "{number} {colour} {shapes} and a {colour2} {shape2}",
    "a small {colour} {shape} above a large {colour2} {shape2}",
    "{number} plus {number2} is {digits}",
)


def builtin_corpus(num_sentences: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic list of sentences (same seed -> same corpus)."""
    rng = random.Random(seed)

    def fill(template: str) -> str:
        values = {
            "colour": rng.choice(COLOURS),
            "colour2": rng.choice(COLOURS),
            "shape": rng.choice(SHAPES),
            "shape2": rng.choice(SHAPES),
            "position": rng.choice(POSITIONS),
            "number": rng.choice(NUMBERS),
            "number2": rng.choice(NUMBERS),
            "obj": rng.choice(COCO_CATEGORIES),
            "obj2": rng.choice(COCO_CATEGORIES),
            "digit": str(rng.randrange(10)),
            "digits": str(rng.randrange(1000)),
        }
        values["shapes"] = values["shape"] + ("es" if values["shape"].endswith(("s", "x")) else "s")
        values["ref"] = f"the {values['colour']} {values['shape']}"
        values["sentence"] = "the quick brown fox jumps over the lazy dog"
        return template.format(**values)

    # Words also appear on their own: with no dummy prefix, a label at the start of a string ("person")
    # is a different piece sequence from the same word mid-sentence ("▁person").
    sentences = [w for w in (*COLOURS, *SHAPES, *COCO_CATEGORIES, *NUMBERS) for _ in range(3)]
    sentences += [p.split(" {")[0].split(":")[0] for p in PROMPTS for _ in range(5)]
    for i in range(num_sentences):
        template = PROMPTS[i % len(PROMPTS)] if i % 4 == 0 else rng.choice(TEMPLATES)
        text = fill(template)
        sentences.append(text[0].upper() + text[1:] if rng.random() < 0.3 else text)
    return sentences
