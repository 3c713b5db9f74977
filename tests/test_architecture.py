"""The package's layers import in one direction only (docs/index.md): a module may import from its
own layer and the layers before it, never after. This keeps each layer usable without the ones above."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT

LAYERS = [
    ["unio", "unio.atomic", "unio.pictures"],
    ["unio.vocab"],
    ["unio.tokenizers"],
    ["unio.sequence", "unio.grammar"],
    ["unio.tasks"],
    ["unio.data"],
    ["unio.model"],
    ["unio.train"],
    ["unio.eval", "unio.pipeline", "unio.florence", "unio.demo", "unio.probes", "unio.cli"],
]


def _layer(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or (p != "unio" and module.startswith(p + ".")) for p in prefixes):
            return index
    return None


def _imports(path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [
                (node.lineno, f"{node.module}.{alias.name}") for alias in node.names if node.module == "unio"
            ]
    return found


def test_imports_point_backwards_only():
    violations = []
    for path in sorted((REPO_ROOT / "unio").rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        own = _layer(module)
        if own is None:
            violations.append(f"{module}: not assigned to a layer in tests/test_architecture.py")
            continue
        for line, imported in _imports(path):
            target = _layer(imported) if imported.startswith("unio") else None
            if target is not None and target > own:
                violations.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {imported} (a later layer)")
    assert not violations, "\n".join(violations)


def test_eval_never_imports_train():
    """Evaluation must work without the training code (issue #11 item 7): shared helpers such as the
    reconstruction pictures live in a layer both may import (unio/pictures.py)."""
    violations = []
    for path in sorted((REPO_ROOT / "unio" / "eval").rglob("*.py")):
        for line, imported in _imports(path):
            if imported == "unio.train" or imported.startswith("unio.train."):
                violations.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {imported}")
    assert not violations, "\n".join(violations)
