"""Temporary: the YAML corpus is the old Python list, step for step (removed with scenarios.py)."""

from __future__ import annotations

import pytest

from contracts.harness.corpus import load_corpus
from contracts.harness.scenarios import LETTA, MATRIX


@pytest.mark.parametrize(("service", "old"), [("matrix", MATRIX), ("letta", LETTA)])
def test_the_yaml_corpus_is_the_python_list(service: str, old: list[object]) -> None:
    new = load_corpus(service)
    assert len(new) == len(old)
    for number, (was, now) in enumerate(zip(old, new, strict=True), 1):
        assert now == was, f"step {number}"
