"""The commands in docs/ run. Every ```bash block is executed from the repository root, except blocks
preceded by an HTML comment `<!-- not-tested: reason -->` (long training runs, multi-node launches).
A block preceded by `<!-- needs-data -->` reads ../shared/data (or $UNIO_DATA) and skips, saying so,
when that folder is absent: every other command must work on a fresh clone without it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, shared_data_dir

BLOCK = re.compile(
    r"(<!--\s*not-tested:[^>]*-->\s*)?(<!--\s*needs-data\s*-->\s*)?```bash\n(.*?)```", re.DOTALL
)


def _blocks() -> list[tuple[str, str, bool]]:
    found = []
    for doc in [*sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]:
        for i, match in enumerate(BLOCK.finditer(doc.read_text())):
            if match.group(1) is None:
                found.append((f"{doc.name}#{i}", match.group(3), match.group(2) is not None))
    return found


@pytest.mark.slow
@pytest.mark.parametrize(("where", "script", "needs_data"), _blocks(), ids=[w for w, *_ in _blocks()])
def test_doc_commands_run(where, script, needs_data, tmp_path):
    if needs_data and not shared_data_dir().is_dir():
        pytest.skip(f"{where} reads real data: {shared_data_dir()} is absent (set UNIO_DATA)")
    if re.search(r"^\s*make\b", script, re.MULTILINE):
        pytest.skip(f"{where}: make targets are exercised by CI itself")
    # `.venv/bin/x` in docs means "the project's environment": use the interpreter running the tests.
    script = script.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    env = {**os.environ, "WANDB_MODE": "disabled", "UNIO_TMP": str(tmp_path)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        f"{where} failed:\n{script}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )
