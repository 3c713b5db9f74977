"""Grammar-constrained decoding: apply compiled `unio.grammar` automata as logits masks.

A row in state ``s`` with ``remaining`` tokens left may emit the tokens whose class ``c`` has
``steps_after[s, c] < remaining``: the output can still be finished within the token budget, so
generation never stops in the middle of a box or a grid. Rows may follow different grammars (a
mixed-task batch): the grammars are compiled together and each row starts in its own start state.

Two ways to apply that per step:

- While ``remaining`` exceeds every finite ``steps_after[s]`` of every row's state (almost every
  step), the budget refuses nothing and the mask depends on the state alone: one add of that
  state's precomputed ``[V]`` bias row (0 or -inf, `CompiledGrammar.bias_table`), broadcast when all
  rows share a pattern (grids, lock-step batches), else of the gathered rows. Any grammar refuses
  the vocabulary's padding ids (`GrammarBuilder.edge` checks), so this add also replaces
  generation's own invalid-id bias.
- Near the end of the budget, or when the table would exceed ``cache_bytes`` (a large answer trie):
  ``(steps_after[state] >= remaining)[:, token_class]``, a ``[B, C]`` gather and a ``[B, V]`` gather
  over the tiny class table, then one ``masked_fill``.

The automaton (current state per row, next state per chosen token) runs on the host:
`advance` reads the chosen tokens anyway, to refuse a token the grammar does not allow. With both,
a constrained step costs about what an unconstrained one does (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unio.grammar import CompiledGrammar, Grammar, compile_grammars


class GrammarConstraint:
    """Stateful logits processor for one generation call.

    grammars: one grammar for every row, or one per row.
    cache_bytes: largest bias table (patterns x vocabulary x 4 bytes) to use; bigger grammars take
        the gather path at every step.
    """

    def __init__(
        self,
        grammars: Grammar | Sequence[Grammar],
        batch_size: int,
        max_new_tokens: int,
        device: torch.device | str = "cpu",
        cache_bytes: int = 64 << 20,
    ) -> None:
        if isinstance(grammars, Grammar):
            compiled = grammars.compiled
            row_grammar = torch.zeros(batch_size, dtype=torch.long)
        else:
            if len(grammars) != batch_size:
                raise ValueError(
                    f"GrammarConstraint: {len(grammars)} grammars for a batch of {batch_size} rows"
                )
            unique = list({id(g): g for g in grammars}.values())
            compiled = compile_grammars(unique)
            position = {id(g): i for i, g in enumerate(unique)}
            row_grammar = torch.tensor([position[id(g)] for g in grammars], dtype=torch.long)
        for i, name in enumerate(compiled.names):
            need = compiled.min_length(i)
            if need > max_new_tokens:
                raise ValueError(
                    f"grammar {name!r} needs at least {need} tokens but max_new_tokens is {max_new_tokens}"
                )
        self.compiled: CompiledGrammar = compiled
        self.device = torch.device(device)
        self.token_class = compiled.token_class.to(device)
        self.steps_after = compiled.steps_after.to(device)
        # Host-side automaton (row states as a list, tables from `CompiledGrammar.host_tables`): a few
        # lookups per step cost less than the tensor indexing ops they replace, which dominated a
        # batch-1 step's grammar cost.
        self._states: list[int] = compiled.starts[row_grammar].tolist()
        self._next_state, self._token_class, self._budget_binds_up_to, self._pattern_of_state = (
            compiled.host_tables
        )
        fits = len(compiled.state_patterns[0]) * len(self._token_class) * 4 <= cache_bytes
        self._bias_table = compiled.bias_table(device) if fits else None

    @property
    def state(self) -> Tensor:
        """``[B]`` current state of every row (on the constraint's device)."""
        return torch.tensor(self._states, device=self.device)

    def allowed(self, remaining: int) -> Tensor:
        """``[B, V]`` bool: tokens each row may emit when `remaining` tokens (this one included) are left."""
        return ~self.disallowed(remaining)

    def disallowed(self, remaining: int) -> Tensor:
        refused_class = self.steps_after.index_select(0, self.state) >= remaining  # [B, C]
        # gather over an expanded (stride-0) index: ~3x faster on CPU than index_select along dim 1.
        return refused_class.gather(1, self.token_class.expand(refused_class.shape[0], -1))  # [B, V]

    def mask_(self, logits: Tensor, remaining: int) -> Tensor:
        """Set disallowed logits to -inf in place (``logits`` is ``[B, V]``)."""
        binds = self._budget_binds_up_to
        if self._bias_table is None or max(binds[s] for s in self._states) >= remaining:
            return logits.masked_fill_(self.disallowed(remaining), float("-inf"))
        patterns = [self._pattern_of_state[s] for s in self._states]
        if patterns.count(patterns[0]) == len(patterns):
            return logits.add_(self._bias_table[patterns[0]])
        index = torch.tensor(patterns, device=self.device)
        return logits.add_(self._bias_table.index_select(0, index))

    def advance(self, tokens: Tensor) -> None:
        """Move every row along its chosen token; a refused token is a bug in the caller."""
        chosen = tokens.tolist()
        table, token_class = self._next_state, self._token_class
        nxt = [table.item(s, token_class[t]) for s, t in zip(self._states, chosen)]
        if min(nxt) < 0:
            row = next(i for i, s in enumerate(nxt) if s < 0)
            raise RuntimeError(f"row {row} emitted token {chosen[row]} that its grammar does not allow")
        self._states = nxt

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (beam search)."""
        self._states = [self._states[i] for i in index.tolist()]

    def repeat_interleave(self, n: int) -> None:
        """Expand every row into `n` consecutive rows (beams)."""
        self._states = [s for s in self._states for _ in range(n)]

    @property
    def finished(self) -> Tensor:
        """``[B]`` bool: rows that emitted their ``<eos>``."""
        return self.state == self.compiled.final

    @property
    def all_finished(self) -> bool:
        """Every row emitted its ``<eos>`` (a host check, no device sync)."""
        return all(s == self.compiled.final for s in self._states)
