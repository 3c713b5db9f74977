"""The multitask mixture: deterministic, resumable, sharded without duplicates, rates as documented."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from unio.data.mixture import Mixture, MixtureConfig


def components() -> dict[str, list[dict]]:
    return {
        name: [{"name": name, "i": i} for i in range(size)]
        for name, size in (("a", 50), ("b", 300), ("c", 7))
    }


def take(mixture: Mixture, n: int) -> list[tuple[str, int]]:
    return [(row["component"], row["i"]) for row in itertools.islice(iter(mixture), n)]


def test_same_seed_same_stream_other_seed_other_stream():
    first = take(Mixture(components(), MixtureConfig(seed=1)), 500)
    assert first == take(Mixture(components(), MixtureConfig(seed=1)), 500)
    assert first != take(Mixture(components(), MixtureConfig(seed=2)), 500)


@pytest.mark.parametrize("world_size", [1, 3])
def test_resume_from_saved_position_gives_the_same_next_1000(world_size):
    cfg = MixtureConfig(weights={"c": 5.0}, temperature=2.0, seed=7)
    for rank in range(world_size):
        mixture = Mixture(components(), cfg, rank=rank, world_size=world_size)
        stream = iter(mixture)
        for _ in range(1234):
            next(stream)
        state = mixture.state_dict()
        expected = [(r["component"], r["i"]) for r in itertools.islice(stream, 1000)]

        resumed = Mixture(components(), cfg, rank=rank, world_size=world_size)
        resumed.load_state_dict(state)
        assert take(resumed, 1000) == expected


def test_ranks_partition_the_global_stream_without_duplicates():
    cfg = MixtureConfig(seed=3)
    single = take(Mixture(components(), cfg), 300)
    ranks = [take(Mixture(components(), cfg, rank=r, world_size=3), 100) for r in range(3)]
    interleaved = [ranks[k % 3][k // 3] for k in range(300)]
    assert interleaved == single
    # Within one epoch of a component no example repeats, across all ranks together.
    size = {"a": 50, "b": 300, "c": 7}
    seen = Counter(single)
    draws = Counter(name for name, _ in single)
    for (name, _), count in seen.items():
        assert count <= math.ceil(draws[name] / size[name])


def test_every_example_once_per_epoch():
    mixture = Mixture({"x": [{"i": i} for i in range(10)]}, MixtureConfig(seed=0))
    rows = [r["i"] for r in itertools.islice(iter(mixture), 30)]
    for epoch in range(3):
        assert sorted(rows[10 * epoch : 10 * epoch + 10]) == list(range(10))
    assert rows[:10] != rows[10:20]  # reshuffled each epoch


def test_rates_follow_weights_and_temperature():
    sizes = np.array([50, 300, 7])
    proportional = Mixture(components(), MixtureConfig(temperature=1.0)).probabilities
    assert np.allclose(proportional, sizes / sizes.sum())
    flat = Mixture(
        components(), MixtureConfig(temperature=math.inf, weights={"a": 1, "b": 1, "c": 2})
    ).probabilities
    assert np.allclose(flat, [0.25, 0.25, 0.5])
    tempered = Mixture(components(), MixtureConfig(temperature=2.0)).probabilities
    assert np.allclose(tempered, np.sqrt(sizes) / np.sqrt(sizes).sum())
    counts = Counter(name for name, _ in take(Mixture(components(), MixtureConfig(temperature=2.0)), 20000))
    observed = np.array([counts[n] for n in "abc"]) / 20000
    assert np.abs(observed - tempered).max() < 0.02


def test_bad_configs_and_mismatched_state_are_refused():
    with pytest.raises(ValueError, match="unknown components"):
        Mixture(components(), MixtureConfig(weights={"zzz": 1.0}))
    with pytest.raises(ValueError, match="no examples"):
        Mixture({"empty": []})
    with pytest.raises(ValueError, match="rank"):
        Mixture(components(), rank=2, world_size=2)
    state = Mixture(components(), MixtureConfig(seed=1)).state_dict()
    with pytest.raises(ValueError, match="field 'seed'"):
        Mixture(components(), MixtureConfig(seed=2)).load_state_dict(state)


def test_worker_processes_are_refused():
    from torch.utils.data import DataLoader

    loader = DataLoader(Mixture(components()), batch_size=2, num_workers=1, collate_fn=list)
    with pytest.raises(RuntimeError, match="num_workers=0"):
        next(iter(loader))


def test_weights_by_task_name_apply_to_every_dataset():
    comps = {"coco/detect": [{"i": 0}], "voc/detect": [{"i": 0}], "coco/caption": [{"i": 0}]}
    rates = Mixture(comps, MixtureConfig(weights={"detect": 3.0, "coco/detect": 1.0})).rates()
    assert rates == pytest.approx({"coco/detect": 0.2, "voc/detect": 0.6, "coco/caption": 0.2})


def test_seek_continues_the_global_stream_with_another_world_size():
    components = {"a": list(range(7)), "b": list(range(5))}
    single = Mixture(components)
    for _ in range(12):
        single.next_index()
    expected = [single.next_index() for _ in range(8)]
    ranks = [Mixture(components, rank=r, world_size=2) for r in range(2)]
    for mixture in ranks:
        mixture.seek(12)
    got = [ranks[i % 2].next_index() for i in range(8)]
    assert got == expected


def test_visual_warmup_draws_only_its_tasks_then_the_mixture():
    warm = MixtureConfig(seed=3, warmup_weights={"c": 1.0, "absent": 2.0}, warmup_fraction=0.25)
    mixture = Mixture(components(), warm, total_examples=20000)
    assert mixture.warmup_examples == 5000
    assert mixture.warmup_rates() == {"a": 0.0, "b": 0.0, "c": 1.0}  # "absent" names no component
    stream = take(mixture, 9000)
    assert {name for name, _ in stream[:5000]} == {"c"}  # crosses a 4096-draw block
    after = Counter(name for name, _ in stream[5000:])
    plain = Mixture(components(), MixtureConfig(seed=3))
    assert after.keys() == {"a", "b", "c"}
    for name, rate in plain.rates().items():
        assert abs(after[name] / 4000 - rate) < 0.03
    # a pure function of the draw index: seek (resume with another world size) lands in the same stream
    second = Mixture(components(), warm, rank=1, world_size=2, total_examples=20000)
    second.seek(4000)
    assert take(second, 1000) == stream[4001:6001:2]
    # no component named, or no fraction: no warm-up; bad values are refused
    no_match = MixtureConfig(warmup_weights={"x": 1.0}, warmup_fraction=0.5)
    assert Mixture(components(), no_match, total_examples=100).warmup_rates() == {}
    assert Mixture(components(), MixtureConfig(warmup_weights={"c": 1.0})).warmup_rates() == {}
    with pytest.raises(ValueError, match="warmup_weights"):
        Mixture(
            components(), MixtureConfig(warmup_weights={"c": -1.0}, warmup_fraction=0.5), total_examples=10
        )
    with pytest.raises(ValueError, match="warmup_fraction"):
        Mixture(
            components(), MixtureConfig(warmup_weights={"c": 1.0}, warmup_fraction=1.0), total_examples=10
        )
    with pytest.raises(ValueError, match="total_examples"):
        Mixture(components(), MixtureConfig(warmup_weights={"c": 1.0}, warmup_fraction=0.5))
