"""A multitask mixture: an endless, deterministic, resumable, rank-sharded stream of examples.

Sampling rates: component c (a task on a dataset) with `n_c` examples and weight `w_c` is drawn with
probability proportional to

    w_c * n_c ** (1 / temperature)

so temperature 1 is examples-proportional mixing (times the weights), larger temperatures flatten the
sizes towards uniform, and `temperature = inf` uses the weights alone.

The stream is a function of (seed, components, weights) only. Global draw k picks its component from a
random stream keyed by (seed, k // block) and takes that component's next example: the j-th draw from
component c is element j mod n_c of a permutation keyed by (seed, c, j // n_c), so every example is
seen once per epoch of its component and epochs are reshuffled.

Warm-up: the first `warmup_fraction` of the run's global draws (`total_examples`, which the trainer
gives as max_steps x batch_size) pick their component with `warmup_weights` instead
(a *visual warm-up*: tasks a text prior cannot solve, e.g. classify and ground, before the mixture's
question-answering tasks; without it a multitask model learns the answer priors first and then
ignores the image: docs/results.md). Those choices come from their own stream keyed by (seed, block),
so the stream stays a pure function of the draw index: resuming and `seek` are unchanged.

Data parallel: rank r of `world_size` yields global draws r, r + world_size, r + 2 * world_size, ...
All ranks walk the same global stream (only integers, cheap), so together they see each draw exactly
once and no example twice within an epoch of its component.

Resuming: `state_dict()` after n yielded examples holds the global position and the per-component
draw counts; `load_state_dict` on a fresh mixture with the same components continues with exactly the
example that would have come next.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

BLOCK = 4096  # component choices drawn per random call


@dataclass
class MixtureConfig:
    # Weight per component ("coco/detect") or per task ("detect": every dataset's detect); default 1.0.
    weights: dict[str, float] = field(default_factory=dict)
    temperature: float = 1.0
    seed: int = 0
    # Visual warm-up (module docstring): weights per component or task for the first `warmup_fraction`
    # of the run's draws; components not named get 0. Names that match no component are skipped (they
    # may be absent from the data); if none matches there is no warm-up.
    warmup_weights: dict[str, float] = field(default_factory=dict)
    warmup_fraction: float = 0.0


class Mixture(torch.utils.data.IterableDataset):
    """`components`: name -> indexable dataset (e.g. a pretokenized `datasets.Dataset`). Iterating yields
    `components[name][index]` rows with a `component` field added."""

    def __init__(
        self,
        components: Mapping[str, Sequence[Any]],
        config: MixtureConfig | None = None,
        rank: int = 0,
        world_size: int = 1,
        total_examples: int | None = None,
    ) -> None:
        """`total_examples`: the run's global draws (max_steps x batch_size), which `warmup_fraction`
        is a fraction of; needed only for a warm-up."""
        super().__init__()
        self.config = config or MixtureConfig()
        if not components:
            raise ValueError("mixture: no components")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"mixture: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        tasks = {name.rsplit("/", 1)[-1] for name in components}
        unknown = sorted(set(self.config.weights) - set(components) - tasks)
        if unknown:
            raise ValueError(
                f"mixture: weights given for unknown components {unknown}; components: {sorted(components)}"
            )
        if not self.config.temperature > 0:
            raise ValueError(f"mixture: temperature must be > 0, got {self.config.temperature}")
        self.components = dict(components)
        self.names = list(self.components)
        self.sizes = np.array([len(self.components[n]) for n in self.names], dtype=np.int64)
        w = self.config.weights
        weights = np.array([float(w.get(n, w.get(n.rsplit("/", 1)[-1], 1.0))) for n in self.names])
        if (weights < 0).any() or not (weights > 0).any():
            raise ValueError(
                f"mixture: weights must be >= 0 with at least one > 0, got {dict(zip(self.names, weights))}"
            )
        empty = [n for n, s, w in zip(self.names, self.sizes, weights) if s == 0 and w > 0]
        if empty:
            raise ValueError(f"mixture: components {empty} have no examples but a positive weight")
        exponent = 0.0 if math.isinf(self.config.temperature) else 1.0 / self.config.temperature
        rates = weights * np.where(self.sizes > 0, self.sizes.astype(np.float64), 1.0) ** exponent
        self.probabilities = rates / rates.sum()
        self.warmup_examples, self.warmup_probabilities = self._warmup(tasks, total_examples)
        self.rank, self.world_size = rank, world_size
        self._position = rank  # next global draw this rank yields
        self._counts = np.zeros(len(self.names), dtype=np.int64)  # draws per component before _position
        self._counted_to = 0  # global draws folded into _counts
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}
        self._block_cache: tuple[int, np.ndarray] | None = None

    def _warmup(self, tasks: set[str], total_examples: int | None) -> tuple[int, np.ndarray | None]:
        """(warm-up draws, component probabilities during them); (0, None) without a warm-up."""
        cfg = self.config
        if not 0.0 <= cfg.warmup_fraction < 1.0:
            raise ValueError(f"mixture: warmup_fraction must be in [0, 1), got {cfg.warmup_fraction}")
        w = cfg.warmup_weights
        if any(v < 0 for v in w.values()):
            raise ValueError(f"mixture: warmup_weights must be >= 0, got {dict(w)}")
        weights = np.array([float(w.get(n, w.get(n.rsplit("/", 1)[-1], 0.0))) for n in self.names])
        weights[self.sizes == 0] = 0.0
        if cfg.warmup_fraction == 0 or not (weights > 0).any():
            return 0, None
        if total_examples is None or total_examples <= 0:
            raise ValueError(
                f"mixture: warmup_fraction={cfg.warmup_fraction} needs the run's total_examples "
                f"(max_steps x batch_size), got {total_examples}"
            )
        return round(cfg.warmup_fraction * total_examples), weights / weights.sum()

    # ----------------------------------------------------------------------------- sampling
    def rates(self) -> dict[str, float]:
        return dict(zip(self.names, self.probabilities.tolist()))

    def warmup_rates(self) -> dict[str, float]:
        """Component probabilities of the first `warmup_examples` draws ({} without a warm-up)."""
        if self.warmup_probabilities is None:
            return {}
        return dict(zip(self.names, self.warmup_probabilities.tolist()))

    def _choices(self, block: int) -> np.ndarray:
        if self._block_cache is None or self._block_cache[0] != block:
            rng = np.random.default_rng([self.config.seed, 0x6D6978, block])
            choices = rng.choice(len(self.names), size=BLOCK, p=self.probabilities)
            warm = min(self.warmup_examples - block * BLOCK, BLOCK)
            if self.warmup_probabilities is not None and warm > 0:
                rng = np.random.default_rng([self.config.seed, 0x7761726D, block])
                choices[:warm] = rng.choice(len(self.names), size=warm, p=self.warmup_probabilities)
            self._block_cache = (block, choices)
        return self._block_cache[1]

    def _permutation(self, component: int, epoch: int) -> np.ndarray:
        key = (component, epoch)
        if key not in self._perm_cache:
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k[0] != component}
            rng = np.random.default_rng([self.config.seed, 0x706572, component, epoch])
            self._perm_cache[key] = rng.permutation(int(self.sizes[component]))
        return self._perm_cache[key]

    def _advance_counts(self, upto: int) -> None:
        """Fold the component choices of global draws [_counted_to, upto) into the counts."""
        k = self._counted_to
        while k < upto:
            block, offset = divmod(k, BLOCK)
            stop = min(upto - block * BLOCK, BLOCK)
            self._counts += np.bincount(self._choices(block)[offset:stop], minlength=len(self.names))
            k = block * BLOCK + stop
        self._counted_to = upto

    def next_index(self) -> tuple[str, int]:
        """(component name, example index) of this rank's next draw; advances the stream."""
        k = self._position
        self._advance_counts(k)
        component = int(self._choices(k // BLOCK)[k % BLOCK])
        j = int(self._counts[component])
        n = int(self.sizes[component])
        index = int(self._permutation(component, j // n)[j % n])
        self._position = k + self.world_size
        return self.names[component], index

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if torch.utils.data.get_worker_info() is not None:
            raise RuntimeError(
                "mixture: use DataLoader(num_workers=0). In worker processes each worker would replay the "
                "same stream, and the position saved by state_dict() (in the main process) would not "
                "move; reading pretokenized rows is cheap enough for the main process"
            )
        while True:
            name, index = self.next_index()
            row = dict(self.components[name][index])
            row["component"] = name
            yield row

    # ----------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        self._advance_counts(self._position)
        return {
            "position": self._position,
            "counts": self._counts.tolist(),
            "names": list(self.names),
            "sizes": self.sizes.tolist(),
            "seed": self.config.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def seek(self, global_draws: int) -> None:
        """Continue the global stream after its first `global_draws` draws (all ranks together): how a
        run resumes with another world size, where the saved per-rank positions no longer apply."""
        if global_draws < 0:
            raise ValueError(f"mixture: global_draws must be >= 0, got {global_draws}")
        self._position = global_draws + self.rank
        self._counts = np.zeros(len(self.names), dtype=np.int64)
        self._counted_to = 0

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        expected = {"names": self.names, "sizes": self.sizes.tolist(), "seed": self.config.seed}
        expected |= {"rank": self.rank, "world_size": self.world_size}
        for key, value in expected.items():
            found = list(state[key]) if isinstance(value, list) else state[key]
            if found != value:
                raise ValueError(
                    f"mixture state does not match this mixture: field {key!r} is {state[key]!r}, expected {value!r}"
                )
        self._position = int(state["position"])
        self._counts = np.asarray(state["counts"], dtype=np.int64)
        self._counted_to = self._position
