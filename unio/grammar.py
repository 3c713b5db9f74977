"""Finite-state output grammars over the unified vocabulary.

A `Grammar` is a deterministic finite automaton whose edges are labelled with `TokenSet`s (unions of
id ranges: whole segments, a single special token, one text piece of an answer trie). Generation
applies it as a logits mask (unio/model/constraints.py), so a constrained output always decodes with
`SequenceCodec.decode` without problems.

Compilation turns the edge labels into *token classes*: the sorted endpoints of every range the
grammar mentions cut the id space into elementary intervals, and every mentioned set is a union of
them. The compiled tables are then tiny (``[states, classes]``) and the per-step mask for a whole
batch is one gather, ``allowed[state][:, token_class]``. Counters (exactly N grid codes, K keypoints)
are unrolled into N states; that costs N rows of the small table, not N vocabulary masks.

Every grammar ends with ``<eos>`` into a single final state. The compiled form also stores, per
state, the fewest tokens still needed to finish; generation only allows a token if the output can
still be completed within the remaining budget, so a constrained output is never cut off mid-group.

Tasks pick a grammar with the factories at the bottom (`free_text`, `closed_answers`, `detection`,
`single_box`, `points`, `grid`); new ones are built with `GrammarBuilder` (docs/model.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from unio.sequence import SequenceCodec
from unio.vocab import BRACKETS, GRID_MODALITIES, Vocabulary

UNREACHABLE = 1 << 30  # "steps to finish" of states that cannot reach the final state


@dataclass(frozen=True)
class TokenSet:
    """A set of global ids as half-open ranges ``[(start, stop), ...]`` plus a readable name."""

    ranges: tuple[tuple[int, int], ...]
    name: str

    def __post_init__(self) -> None:
        for start, stop in self.ranges:
            if not 0 <= start < stop:
                raise ValueError(f"TokenSet {self.name!r}: empty or negative range ({start}, {stop})")

    def __or__(self, other: TokenSet) -> TokenSet:
        return TokenSet(self.ranges + other.ranges, f"{self.name}|{other.name}")

    def contains(self, token: int) -> bool:
        return any(start <= token < stop for start, stop in self.ranges)


def segment_set(vocab: Vocabulary, segment: str) -> TokenSet:
    rng = vocab.segment_range(segment)
    return TokenSet(((rng.start, rng.stop),), segment)


def token_set(vocab: Vocabulary, *tokens: str | int) -> TokenSet:
    """Single tokens, by special-token name or global id."""
    ids = [vocab.token_id(t) if isinstance(t, str) else int(t) for t in tokens]
    for i in ids:
        if not 0 <= i < vocab.used_size:
            raise ValueError(f"token id {i} is outside the vocabulary (used size {vocab.used_size})")
    return TokenSet(tuple((i, i + 1) for i in ids), "|".join(str(t) for t in tokens))


def text_set(codec: SequenceCodec) -> TokenSet:
    """Text pieces the codec's tokenizer can decode (the text segment may be larger than the tokenizer)."""
    start = codec.vocab.offset("text")
    return TokenSet(((start, start + codec.text.vocab_size),), "text")


@dataclass
class CompiledGrammar:
    """Dense tables of one or more grammars over a shared token-class partition (CPU tensors)."""

    token_class: torch.Tensor  # [V] class of every id
    next_state: torch.Tensor  # [S, C] next state, -1 where the class is not allowed
    # [S, C] tokens still needed to finish after taking that class (UNREACHABLE where not allowed)
    steps_after: torch.Tensor
    starts: torch.Tensor  # [G] start state of each grammar
    final: int  # the shared final state (after <eos>)
    names: tuple[str, ...]
    _bias_tables: dict[tuple[str, torch.dtype], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @cached_property
    def state_patterns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """States that can finish through the same token classes share a pattern: ``(allowed [P, C]
        bool, pattern_of_state [S])``. An unrolled counter (N grid codes) has N states but one pattern."""
        return torch.unique(self.steps_after < UNREACHABLE, dim=0, return_inverse=True)

    @cached_property
    def host_tables(self) -> tuple[np.ndarray, list[int], list[int], list[int]]:
        """Host copies for stepping the automaton without tensor ops, built once per grammar:
        ``(next_state [S, C] numpy, token_class [V], budget_binds_up_to [S], pattern_of_state [S])``.
        ``budget_binds_up_to[s]`` is the largest finite ``steps_after[s]``: the token budget can refuse
        a token in state ``s`` only when at most that many tokens remain."""
        finite = torch.where(self.steps_after < UNREACHABLE, self.steps_after, -1)
        return (
            self.next_state.numpy(),
            self.token_class.tolist(),
            finite.max(dim=1).values.tolist(),
            self.state_patterns[1].tolist(),
        )

    def bias_table(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[P, V]`` additive logits bias of every pattern (0 allowed, -inf refused), built once per
        device and dtype; rows are indexed by ``state_patterns[1][state]``."""
        key = (str(torch.device(device)), dtype)
        if key not in self._bias_tables:
            refused = ~self.state_patterns[0][:, self.token_class]
            table = torch.zeros(refused.shape, dtype=dtype).masked_fill_(refused, float("-inf"))
            self._bias_tables[key] = table.to(device)
        return self._bias_tables[key]

    def min_length(self, index: int = 0) -> int:
        """Fewest tokens (including <eos>) any output of grammar `index` has."""
        return 1 + int(self.steps_after[int(self.starts[index])].min())

    def walk(self, tokens: Iterable[int], index: int = 0) -> int:
        """State after feeding `tokens` from the start of grammar `index`; -1 once a token is refused."""
        state = int(self.starts[index])
        for tok in tokens:
            state = int(self.next_state[state, self.token_class[int(tok)]])
            if state < 0:
                return -1
        return state

    def accepts(self, tokens: Iterable[int], index: int = 0) -> bool:
        """True when `tokens` (through <eos>, optional trailing <pad>) is a complete output."""
        return self.walk(tokens, index) == self.final


@dataclass
class Grammar:
    """A DFA: ``edges[state]`` is a list of ``(TokenSet, next_state)``; state ``final`` has no exits."""

    name: str
    vocab: Vocabulary
    edges: list[list[tuple[TokenSet, int]]]
    start: int
    final: int

    @property
    def num_states(self) -> int:
        return len(self.edges)

    @cached_property
    def compiled(self) -> CompiledGrammar:
        return compile_grammars([self])


class GrammarBuilder:
    """Add states and edges, then `build`. Every accepted output ends with ``<eos>`` into `final`."""

    def __init__(self, name: str, vocab: Vocabulary) -> None:
        self.name, self.vocab = name, vocab
        self.edges: list[list[tuple[TokenSet, int]]] = []
        self.final = self.state()
        self.eos = token_set(vocab, "<eos>")

    def state(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1

    def edge(self, src: int, tokens: TokenSet, dst: int) -> None:
        if src == self.final:
            raise ValueError(f"grammar {self.name!r}: the final state cannot have outgoing edges")
        if tokens.contains(self.vocab.pad_id):
            raise ValueError(f"grammar {self.name!r}: <pad> is reserved for finished rows")
        # Generation relies on this: a grammar mask also refuses the vocabulary's padding ids.
        if any(stop > self.vocab.used_size for _, stop in tokens.ranges):
            raise ValueError(
                f"grammar {self.name!r}: token set {tokens.name!r} reaches past the used vocabulary "
                f"(ids >= {self.vocab.used_size} are padding)"
            )
        self.edges[src].append((tokens, dst))

    def end(self, src: int) -> None:
        """Allow ``<eos>`` in `src`, finishing the output."""
        self.edge(src, self.eos, self.final)

    def sequence(self, src: int, token_sets: Sequence[TokenSet]) -> int:
        """A chain of edges, one token from each set in order; returns the last state."""
        for tokens in token_sets:
            nxt = self.state()
            self.edge(src, tokens, nxt)
            src = nxt
        return src

    def trie(self, src: int, paths: Sequence[Sequence[int]]) -> list[int]:
        """A trie over id sequences rooted at `src`; returns the state reached by each path."""
        children: dict[tuple[int, int], int] = {}
        ends = []
        for path in paths:
            state = src
            for tok in path:
                key = (state, int(tok))
                if key not in children:
                    children[key] = self.state()
                    self.edge(state, TokenSet(((int(tok), int(tok) + 1),), f"#{tok}"), children[key])
                state = children[key]
            ends.append(state)
        return ends

    def build(self, start: int) -> Grammar:
        return Grammar(self.name, self.vocab, self.edges, start, self.final)


def compile_grammars(grammars: Sequence[Grammar]) -> CompiledGrammar:
    """Compile grammars (over the same vocabulary) into one table set; grammar i starts at ``starts[i]``."""
    if not grammars:
        raise ValueError("compile_grammars needs at least one grammar")
    vocab = grammars[0].vocab
    if any(g.vocab.fingerprint != vocab.fingerprint for g in grammars):
        raise ValueError("compile_grammars: all grammars must use the same vocabulary")
    # Merge all automata into one state space sharing a single final state (state 0).
    pad = TokenSet(((vocab.pad_id, vocab.pad_id + 1),), "<pad>")
    edges: list[list[tuple[TokenSet, int]]] = [[(pad, 0)]]  # finished rows keep emitting <pad>
    starts = []
    for g in grammars:
        kept = [s for s in range(g.num_states) if s != g.final]
        remap = {s: len(edges) + i for i, s in enumerate(kept)}
        remap[g.final] = 0
        edges.extend([(ts, remap[d]) for ts, d in g.edges[s]] for s in kept)
        starts.append(remap[g.start])
    # Token classes: elementary intervals between all range endpoints.
    bounds = sorted({0, vocab.size, *(p for es in edges for ts, _ in es for r in ts.ranges for p in r)})
    bounds_t = torch.tensor(bounds)
    token_class = torch.bucketize(torch.arange(vocab.size), bounds_t, right=True) - 1
    num_classes = len(bounds) - 1
    index_of = {b: i for i, b in enumerate(bounds)}
    next_state = torch.full((len(edges), num_classes), -1, dtype=torch.long)
    for s, es in enumerate(edges):
        for ts, dst in es:
            for start, stop in ts.ranges:
                block = next_state[s, index_of[start] : index_of[stop]]
                clash = (block >= 0) & (block != dst)
                if clash.any():
                    raise ValueError(
                        f"grammar is not deterministic: state {s} has two edges for tokens in {ts.name!r}"
                    )
                block.fill_(dst)
    # Fewest tokens to reach the final state (Bellman-Ford style relaxation on the small table).
    steps = torch.full((len(edges),), UNREACHABLE, dtype=torch.long)
    steps[0] = 0
    allowed = next_state >= 0
    safe_next = next_state.clamp(min=0)
    for _ in range(len(edges)):
        via = torch.where(allowed, steps[safe_next] + 1, UNREACHABLE).min(dim=1).values
        via[0] = 0
        updated = torch.minimum(steps, via)
        if torch.equal(updated, steps):
            break
        steps = updated
    steps_after = torch.where(allowed, steps[safe_next], UNREACHABLE)
    steps_after[0, token_class[vocab.pad_id]] = 0
    starts_t = torch.tensor(starts, dtype=torch.long)
    for g, s in zip(grammars, starts, strict=True):
        if steps[s] >= UNREACHABLE:
            raise ValueError(f"grammar {g.name!r} can never finish (no path to <eos>)")
    return CompiledGrammar(token_class, next_state, steps_after, starts_t, 0, tuple(g.name for g in grammars))


# --------------------------------------------------------------------------------------- factories
def free_text(codec: SequenceCodec, specials: Sequence[str] = (), allow_empty: bool = True) -> Grammar:
    """Any text, then <eos>. `specials` adds free special tokens (e.g. sentinels for span denoising).
    With `allow_empty=False` at least one token comes before <eos>: the answers of tasks (captions,
    free VQA answers, transcripts) use it, so an output is never the empty string."""
    b = GrammarBuilder("free_text" if allow_empty else "free_text_nonempty", codec.vocab)
    allowed = text_set(codec)
    if specials:
        allowed = allowed | token_set(codec.vocab, *specials)
    start = b.state()
    body = start if allow_empty else b.state()
    b.edge(start, allowed, body)
    if body != start:
        b.edge(body, allowed, body)
    b.end(body)
    return b.build(start)


def answer_text(codec: SequenceCodec) -> Grammar:
    """Free text of at least one text piece, then <eos>: the grammar of every open-ended task answer."""
    return free_text(codec, allow_empty=False)


def _text_paths(codec: SequenceCodec, strings: Sequence[str], what: str) -> list[list[int]]:
    if not strings:
        raise ValueError(f"{what}: the list is empty")
    offset = codec.vocab.offset("text")
    paths = []
    for s in strings:
        ids = codec.text.encode(s)
        if not ids:
            raise ValueError(f"{what}: {s!r} encodes to no text pieces")
        paths.append([offset + i for i in ids])
    return paths


def closed_answers(codec: SequenceCodec, answers: Sequence[str]) -> Grammar:
    """Exactly one of `answers` (their text pieces, as a trie), then <eos>."""
    b = GrammarBuilder("closed_answers", codec.vocab)
    root = b.state()
    for end in b.trie(root, _text_paths(codec, list(dict.fromkeys(answers)), "closed_answers")):
        if not any(ts.contains(codec.vocab.eos_id) for ts, _ in b.edges[end]):
            b.end(end)
    return b.build(root)


def _box_body(
    b: GrammarBuilder,
    codec: SequenceCodec,
    src: int,
    dst: int,
    labels: Sequence[str] | None,
    free_label: bool,
) -> None:
    """From `src` (just after <box>): the label, four coordinates and </box> into `dst`."""
    coord = segment_set(codec.vocab, "coord")
    first = b.state()  # after x1
    if labels is not None:
        for end in b.trie(src, _text_paths(codec, list(dict.fromkeys(labels)), "box labels")):
            if not any(ts.contains(coord.ranges[0][0]) for ts, _ in b.edges[end]):
                b.edge(end, coord, first)
    else:
        if free_label:
            b.edge(src, text_set(codec), src)
        b.edge(src, coord, first)
    last = b.sequence(first, [coord, coord, coord])  # after y1, x2, y2
    b.edge(last, token_set(codec.vocab, BRACKETS["box"][1]), dst)


def detection(codec: SequenceCodec, labels: Sequence[str] | None = None) -> Grammar:
    """``(<box> label x1 y1 x2 y2 </box>)* <eos>``. With `labels`, each label is one of them (trie);
    without, the label is free text (possibly empty)."""
    b = GrammarBuilder("detection", codec.vocab)
    outside = b.state()
    inside = b.state()
    b.edge(outside, token_set(codec.vocab, BRACKETS["box"][0]), inside)
    _box_body(b, codec, inside, outside, labels, free_label=True)
    b.end(outside)
    return b.build(outside)


def single_box(codec: SequenceCodec, labels: Sequence[str] | None = None) -> Grammar:
    """``<box> [label] x1 y1 x2 y2 </box> <eos>``: exactly one box; a label only when `labels` is given."""
    b = GrammarBuilder("single_box", codec.vocab)
    start = b.state()
    inside = b.state()
    closed = b.state()
    b.edge(start, token_set(codec.vocab, BRACKETS["box"][0]), inside)
    _box_body(b, codec, inside, closed, labels, free_label=False)
    b.end(closed)
    return b.build(start)


def points(codec: SequenceCodec, num_points: int | None = None) -> Grammar:
    """``<point> (x y <visible>|x y <occluded>|<absent>)* </point> <eos>``; with `num_points` exactly
    that many entries (e.g. 17 COCO keypoints), unrolled into states."""
    v = codec.vocab
    b = GrammarBuilder("points" if num_points is None else f"points[{num_points}]", v)
    coord = segment_set(v, "coord")
    seen = token_set(v, "<visible>", "<occluded>")
    absent = token_set(v, "<absent>")
    close = token_set(v, BRACKETS["point"][1])
    start = b.state()
    first = b.state()
    b.edge(start, token_set(v, BRACKETS["point"][0]), first)
    if num_points is None:
        entry_end = b.sequence(first, [coord, coord])
        b.edge(entry_end, seen, first)
        b.edge(first, absent, first)
        closed = b.state()
        b.edge(first, close, closed)
    else:
        if num_points < 0:
            raise ValueError(f"points: num_points must be >= 0, got {num_points}")
        state = first
        for _ in range(num_points):
            nxt = b.state()
            b.edge(b.sequence(state, [coord, coord]), seen, nxt)
            b.edge(state, absent, nxt)
            state = nxt
        closed = b.state()
        b.edge(state, close, closed)
    b.end(closed)
    return b.build(start)


def grid(codec: SequenceCodec, modality: str) -> Grammar:
    """``<open> exactly H*W codes </close> <eos>`` for image / mask / audio, shape from the codec."""
    if modality not in GRID_MODALITIES:
        raise ValueError(f"grid: modality must be one of {GRID_MODALITIES}, got {modality!r}")
    shape = codec.grid_shapes.get(modality)
    if shape is None:
        raise ValueError(f"grid: the codec has no grid_shapes[{modality!r}]; pass it to SequenceCodec")
    v = codec.vocab
    opener, closer = BRACKETS[modality]
    codes = segment_set(v, modality)
    b = GrammarBuilder(f"{modality}[{shape[0]}x{shape[1]}]", v)
    start = b.state()
    tokens = [token_set(v, opener), *[codes] * (shape[0] * shape[1]), token_set(v, closer)]
    b.end(b.sequence(start, tokens))
    return b.build(start)
