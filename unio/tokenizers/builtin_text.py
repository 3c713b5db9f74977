"""A small built-in English corpus, generated deterministically, so that a text tokenizer can be trained
with no downloads (the demo, tests, CPU smoke runs). It covers what unio's built-in data talks about:
colours, shapes, positions, counts, COCO category names, spoken digits, and instruction-style prompts,
plus everyday English (a few hundred common words in simple sentences, every letter of the alphabet in
ordinary words), so that words such as "objects" or "quiz" need no byte fallback and a 1000-piece model
really has 1000 pieces. Real runs train on their own captions/transcripts (see `unio-train-text-tokenizer`)."""

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
# Everyday English, so that ordinary words (and all 26 letters) get pieces of their own.
NOUNS = tuple(
    "object,project,subject,thing,place,picture,photo,image,scene,room,house,home,kitchen,garden,street,road,"
    "city,village,park,field,forest,river,lake,beach,ocean,sea,mountain,valley,hill,island,sky,cloud,sun,moon,"
    "rain,snow,wind,water,fire,tree,flower,grass,leaf,rock,stone,sand,window,door,wall,floor,roof,table,box,"
    "bag,basket,jar,jug,bottle,glass,plate,lamp,light,shadow,mirror,picture frame,painting,sign,flag,fence,"
    "bridge,tower,building,school,office,shop,market,station,airport,road sign,boy,girl,man,woman,child,baby,"
    "family,friend,teacher,student,doctor,player,team,crowd,queen,king,judge,pilot,driver,farmer,jacket,"
    "shirt,dress,hat,shoe,jeans,glove,scarf,helmet,watch,ring,key,lock,map,letter,word,question,answer,quiz,"
    "puzzle,game,toy,ball,kite,drum,guitar,piano,violin,xylophone,trumpet,radio,camera,computer,phone,screen,"
    "video,movie,song,voice,music,story,book,page,paper,pen,pencil,fox,wolf,lion,tiger,monkey,rabbit,duck,"
    "goose,owl,fish,frog,snake,turtle,whale,shark,jellyfish,squirrel,kangaroo,penguin,zebra,ox,yak,"
    "lizard,insect,bee,butterfly,food,bread,cheese,egg,milk,juice,soup,rice,salad,fruit,lemon,grape,peach,"
    "melon,cherry,berry,nut,cookie,honey,sugar,salt,pepper,morning,evening,night,day,week,year,time,minute,"
    "hour,quarter,half,dozen,number,size,shape,colour,color,line,corner,edge,side,middle,front,back,top,"
    "example,exercise,experiment,box office,taxi,van,jeep,ship,rocket,engine,wheel,machine,tool,hammer,axe,"
    "rope,chain,wire,x-ray,zipper,zoo,zone,prize,jewel,crown,quilt,pillow,blanket,sofa,desk,shelf,cabinet".split(
        ","
    )
)
ADJECTIVES = tuple(
    "big,small,large,little,tiny,huge,tall,short,long,wide,narrow,thick,thin,heavy,light,old,new,young,"
    "quick,slow,fast,quiet,loud,soft,hard,warm,cold,hot,cool,wet,dry,clean,dirty,bright,dark,shiny,happy,"
    "sad,angry,calm,lazy,busy,empty,full,open,closed,broken,frozen,fuzzy,jolly,jazzy,cozy,crazy,amazing,"
    "strange,famous,favourite,simple,complex,exact,extra,next,sixth,square,round,flat,sharp,smooth,striped,"
    "spotted,wooden,plastic,metal,golden,silver,glass,paper,fresh,juicy,sweet,sour,bitter,spicy,quaint,"
    "unique,equal,major,minor,visible,hidden,beautiful,ugly,pretty,kind,brave,wise,wild,gentle".split(",")
)
VERBS = tuple(
    "is,sits,stands,lies,runs,walks,jumps,swims,flies,climbs,rides,drives,moves,waits,sleeps,plays,reads,"
    "writes,draws,paints,sings,talks,looks,watches,holds,carries,throws,catches,kicks,pushes,pulls,opens,"
    "closes,fixes,mixes,relaxes,waves,smiles,laughs,eats,drinks,cooks,bakes,cuts,picks,packs,buys,sells,"
    "finds,hides,joins,enjoys,rests,squeezes,freezes,zooms,jogs,juggles,knocks,kneels,quits,questions,"
    "queues,explores,expects,explains,examines,injects,objects,projects,rejects,subjects".split(",")
)
PREPOSITIONS = (
    "on",
    "in",
    "under",
    "over",
    "above",
    "below",
    "behind",
    "beside",
    "near",
    "next to",
    "in front of",
    "across",
    "through",
    "around",
    "between the trees and",
    "inside",
    "outside",
    "along",
    "toward",
    "without",
    "with",
    "by",
)
ADVERBS = ("quickly", "slowly", "quietly", "happily", "carefully", "exactly", "just", "very", "quite", "now")
SAYINGS = (
    "the quick brown fox jumps over the lazy dog",
    "pack my box with five dozen liquor jugs",
    "how vexingly quick daft zebras jump",
    "the five boxing wizards jump quickly",
    "sphinx of black quartz judge my vow",
    "jackdaws love my big sphinx of quartz",
    "we promptly judged antique ivory buckles for the next prize",
    "a wizard's job is to vex chumps quickly in fog",
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
    "the {adj} {noun} {verb} {prep} the {noun2}",
    "a {adj} {noun} {verb} {adverb} {prep} a {adj2} {noun2}",
    "{number} {adj} {nouns} and a {noun2}",
    "there is a {noun} {prep} the {adj} {noun2}",
    "this {noun} looks {adj}, and the {noun2} {verb} {adverb}",
    "why does the {adj} {noun} {verb} {prep} the {noun2}?",
    "{saying}",
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
            "adj": rng.choice(ADJECTIVES),
            "adj2": rng.choice(ADJECTIVES),
            "noun": rng.choice(NOUNS),
            "noun2": rng.choice(NOUNS),
            "verb": rng.choice(VERBS),
            "prep": rng.choice(PREPOSITIONS),
            "adverb": rng.choice(ADVERBS),
            "saying": rng.choice(SAYINGS),
        }
        values["nouns"] = values["noun"] + ("es" if values["noun"].endswith(("s", "x", "ch", "sh")) else "s")
        values["shapes"] = values["shape"] + ("es" if values["shape"].endswith(("s", "x")) else "s")
        values["ref"] = f"the {values['colour']} {values['shape']}"
        values["sentence"] = "the quick brown fox jumps over the lazy dog"
        return template.format(**values)

    # Words also appear on their own: with no dummy prefix, a label at the start of a string ("person")
    # is a different piece sequence from the same word mid-sentence ("▁person").
    words = (*COLOURS, *SHAPES, *COCO_CATEGORIES, *NUMBERS, *NOUNS, *ADJECTIVES, *VERBS, *ADVERBS)
    sentences = [w for w in words for _ in range(3)]
    sentences += [w.capitalize() for w in words]  # capitals too: "Zebra", "Quiz", "X-ray" start sentences
    sentences += [s[0].upper() + s[1:] + "." for s in SAYINGS]
    # An alphabet primer, so every capital letter is frequent enough to get a piece of its own
    # (characters rarer than 1 - character_coverage go to byte fallback).
    by_letter = {
        letter: sorted({w for w in words if w[0] == letter}) for letter in "abcdefghijklmnopqrstuvwxyz"
    }
    for letter, choices in by_letter.items():
        for _ in range(25):
            picked = [rng.choice(choices).capitalize() for _ in range(3)]
            sentences.append(f"{letter.upper()} is for {picked[0]}, {picked[1]} and {picked[2]}.")
    sentences += [p.split(" {")[0].split(":")[0] for p in PROMPTS for _ in range(5)]
    for i in range(num_sentences):
        template = PROMPTS[i % len(PROMPTS)] if i % 4 == 0 else rng.choice(TEMPLATES)
        text = fill(template)
        sentences.append(text[0].upper() + text[1:] if rng.random() < 0.3 else text)
    return sentences
