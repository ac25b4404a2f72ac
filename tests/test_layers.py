"""The three layers point one way (library <- mock <- harness <- reference), as import-linter checks them in
`make lint`: the contracts in pyproject.toml hold on the tree as it is, and an import against the grain,
planted in a copy of the tree, breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = {"contracts": ROOT / "contracts", "mockgen": ROOT / "mockgen"}
REFERENCE = ROOT / "reference" / "letta_matrix_reference"


def _copy_tree(tmp_path: Path) -> Path:
    """The three packages and the lint configuration, as plain files in `tmp_path`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.yaml")
    for name, source in PACKAGES.items():
        shutil.copytree(source, tmp_path / name, ignore=ignore)
    shutil.copytree(REFERENCE, tmp_path / REFERENCE.name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _plant(module: Path, line: str) -> None:
    text = module.read_text(encoding="utf-8")
    head, marker, tail = text.partition("from __future__ import annotations\n")
    assert marker, f"{module} has no __future__ import to plant after"
    module.write_text(head + marker + line + "\n" + tail, encoding="utf-8")


def test_the_tree_keeps_its_layers(tmp_path: Path) -> None:
    done = _lint(_copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


# Each planted import, and the contract it must break (the layer contract names its chain, the exhaustive
# one names the module left out of every layer).
PLANTED = [
    # The library may not reach up into the mock ...
    ("contracts/coverage.py", "import mockgen.world", "contracts.coverage -> mockgen.world"),
    # ... nor the mock into the harness ...
    ("mockgen/journal.py", "import contracts.harness.fuzz.plan", "mockgen.journal -> contracts.harness"),
    # ... nor either of them into the reference bridge.
    ("mockgen/faults.py", "import letta_matrix_reference.bridge.errors", "mockgen.faults -> letta_matrix"),
]


def test_imports_against_the_grain_break_the_lint(tmp_path: Path) -> None:
    """One lint run over a tree with every planted import (one run: the linter takes seconds to start)."""
    tree = _copy_tree(tmp_path)
    for module, line, _ in PLANTED:
        _plant(tree / module, line)
    (tree / "contracts" / "unplaced.py").write_text('"""In no layer."""\n', encoding="utf-8")
    done = _lint(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 broken" in done.stdout, done.stdout
    for _, _, chain in PLANTED:
        assert chain in done.stdout, f"{chain} not reported:\n{done.stdout}"
    assert "contracts.unplaced" in done.stdout
