"""Shared fixtures: tiny, hermetic assets (no network, no real data unless a test asks for it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig

os.environ.setdefault("WANDB_MODE", "disabled")
# Tests are many small ops: one intra-op thread per process avoids oversubscribing the cores
# (`make test` runs two pytest-xdist workers on a 2-core machine).
torch.set_num_threads(1)
os.environ.setdefault("HYDRA_FULL_ERROR", "1")

# Hypothesis profiles. `ci` (the default, so also on CI): derandomized (a fixed seed per test,
# so `make test` cannot fail by chance), no example database, the blob to reproduce a failure printed,
# and no deadline (a loaded 2-core machine makes timings meaningless). `slow` explores many more
# examples (HYPOTHESIS_PROFILE=slow make test-slow); `dev` is randomized with the example database,
# for hunting new cases locally.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("slow", max_examples=1000, print_blob=True, deadline=None)
settings.register_profile("dev", print_blob=True, deadline=None)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def shared_data_dir() -> Path:
    """Real datasets live outside the repo (licences); CI has them at ../shared/data."""
    return Path(os.environ.get("UNIO_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set UNIO_DATA or place shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def text_tokenizer() -> TextTokenizer:
    """A small SentencePiece model trained on the built-in corpus (~0.3 s, once per session)."""
    return TextTokenizer.train(builtin_corpus(), TextTokenizerConfig(vocab_size=1000))
