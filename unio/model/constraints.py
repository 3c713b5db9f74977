"""Grammar-constrained decoding: apply compiled `unio.grammar` automata as logits masks.

Per step and for the whole batch: ``refused = (steps_after[state] >= remaining)[:, token_class]``, a
``[B, C]`` gather followed by a ``[B, V]`` gather over the tiny class table, then one ``masked_fill``.
``steps_after < remaining`` keeps only tokens after which the output can still be finished within the
token budget, so generation never stops in the middle of a box or a grid. Rows may follow different
grammars (a mixed-task batch): the grammars are compiled together and each row starts in its own
start state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unio.grammar import CompiledGrammar, Grammar, compile_grammars


class GrammarConstraint:
    """Stateful logits processor for one generation call.

    grammars: one grammar for every row, or one per row.
    """

    def __init__(
        self,
        grammars: Grammar | Sequence[Grammar],
        batch_size: int,
        max_new_tokens: int,
        device: torch.device | str = "cpu",
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
        self.token_class = compiled.token_class.to(device)
        self.next_state = compiled.next_state.to(device)
        self.steps_after = compiled.steps_after.to(device)
        self.state = compiled.starts.to(device)[row_grammar.to(device)]

    def allowed(self, remaining: int) -> Tensor:
        """``[B, V]`` bool: tokens each row may emit when `remaining` tokens (this one included) are left."""
        return ~self.disallowed(remaining)

    def disallowed(self, remaining: int) -> Tensor:
        refused_class = self.steps_after.index_select(0, self.state) >= remaining  # [B, C]
        # gather over an expanded (stride-0) index: ~3x faster on CPU than index_select along dim 1.
        return refused_class.gather(1, self.token_class.expand(refused_class.shape[0], -1))  # [B, V]

    def mask_(self, logits: Tensor, remaining: int) -> Tensor:
        """Set disallowed logits to -inf in place (``logits`` is ``[B, V]``)."""
        return logits.masked_fill_(self.disallowed(remaining), float("-inf"))

    def advance(self, tokens: Tensor) -> None:
        """Move every row along its chosen token; a refused token is a bug in the caller."""
        nxt = self.next_state[self.state, self.token_class[tokens]]
        if bool((nxt < 0).any()):
            row = int((nxt < 0).nonzero()[0, 0])
            raise RuntimeError(f"row {row} emitted token {int(tokens[row])} that its grammar does not allow")
        self.state = nxt

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (beam search)."""
        self.state = self.state[index]

    def repeat_interleave(self, n: int) -> None:
        """Expand every row into `n` consecutive rows (beams)."""
        self.state = self.state.repeat_interleave(n)

    @property
    def finished(self) -> Tensor:
        return self.state == self.compiled.final
