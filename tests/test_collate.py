"""The collator: the batch keys the model reads, padding to a multiple of 8, shifted decoder inputs,
ignored targets, and packing with segment ids."""

from __future__ import annotations

import pytest
import torch

from unio.data.collate import IGNORE_INDEX, Collator, CollatorConfig

BOS, PAD = 2, 0
KEYS = {
    "input_ids", "input_modality", "input_position", "input_row", "input_col", "input_mask",
    "decoder_input_ids", "decoder_modality", "decoder_position", "decoder_row", "decoder_col", "decoder_mask",
    "targets",
}  # fmt: skip


def example(n_in: int, n_tgt: int, first: int = 100, loss: list[int] | None = None) -> dict:
    ex = {
        "input_ids": list(range(first, first + n_in)),
        "input_modality": [3] * n_in,
        "input_row": [i // 2 for i in range(n_in)],
        "input_col": [i % 2 for i in range(n_in)],
        "target_ids": [*range(first + 50, first + 50 + n_tgt - 1), 1],
        "target_modality": [1] * n_tgt,
        "target_row": [-1] * n_tgt,
        "target_col": [-1] * n_tgt,
    }
    if loss is not None:
        ex["target_loss"] = loss
    return ex


def test_batch_keys_shapes_and_padding():
    batch = Collator(BOS)([example(5, 3), example(11, 9)])
    assert set(batch) == KEYS
    assert batch["input_ids"].shape == (2, 16) and batch["targets"].shape == (2, 16)
    assert all(v.shape[1] % 8 == 0 for v in batch.values())
    assert batch["input_mask"].dtype == torch.bool and batch["input_mask"].sum(1).tolist() == [5, 11]
    assert batch["decoder_mask"].sum(1).tolist() == [3, 9]
    assert batch["input_ids"][0, 5:].eq(PAD).all() and batch["input_row"][0, 5:].eq(-1).all()
    assert batch["input_position"][1, :11].tolist() == list(range(11))
    assert batch["input_row"][1, :4].tolist() == [0, 0, 1, 1]


def test_decoder_inputs_are_bos_plus_shifted_targets():
    ex = example(4, 6)
    batch = Collator(BOS)([ex])
    assert batch["decoder_input_ids"][0, :6].tolist() == [BOS, *ex["target_ids"][:-1]]
    assert batch["targets"][0, :6].tolist() == ex["target_ids"]
    assert batch["targets"][0, 6:].eq(IGNORE_INDEX).all()
    assert batch["decoder_modality"][0, :6].tolist() == [0, 1, 1, 1, 1, 1]
    assert batch["decoder_position"][0, :6].tolist() == list(range(6))


def test_target_loss_zero_becomes_ignore_index():
    batch = Collator(BOS)([example(3, 4, loss=[1, 0, 0, 1])])
    assert batch["targets"][0, :4].tolist()[1:3] == [IGNORE_INDEX, IGNORE_INDEX]
    assert batch["decoder_input_ids"][0, 2].item() != IGNORE_INDEX  # inputs keep the real token


def test_packing_puts_short_examples_together_with_segment_ids():
    collate = Collator(BOS, config=CollatorConfig(max_input_len=16, max_target_len=8, pack=True))
    batch = collate([example(6, 3, 100), example(6, 3, 200), example(10, 4, 300), example(3, 2, 400)])
    assert batch["input_ids"].shape[0] == 2  # [6+6+3 | 10] inputs; [3+3+2 | 4] targets
    assert batch["input_segment_ids"][0, :16].tolist() == [1] * 6 + [2] * 6 + [3] * 3 + [0]
    assert batch["decoder_segment_ids"][0, :8].tolist() == [1] * 3 + [2] * 3 + [3] * 2
    assert batch["input_position"][0, 6:12].tolist() == list(range(6))  # restarts per example
    assert batch["decoder_input_ids"][0, 3].item() == BOS  # every packed example starts with <bos>
    assert batch["input_mask"].sum().item() == 6 + 6 + 3 + 10


def test_errors_name_the_problem():
    with pytest.raises(KeyError, match="no field 'target_ids'"):
        Collator(BOS)([{"input_ids": [1], "input_modality": [0], "input_row": [-1], "input_col": [-1]}])
    with pytest.raises(ValueError, match="max_input_len=4"):
        Collator(BOS, config=CollatorConfig(max_input_len=4))([example(5, 2)])
    with pytest.raises(ValueError, match="pack=True needs"):
        Collator(BOS, config=CollatorConfig(pack=True))
