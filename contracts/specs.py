"""Loading the OpenAPI documents (package data in `contracts/openapi/`, which `specs/` at the top of the
repository links to): parsed once, `$ref`s resolved by prance, cached per process."""

from __future__ import annotations

import copy
import functools
import importlib.resources
from pathlib import Path
from typing import Any

import yaml
from prance.util.resolver import RESOLVE_FILES, RESOLVE_INTERNAL, RefResolver

# Found through importlib.resources so that an installed wheel finds them; they are plain files on disk
# (prance resolves `$ref`s by file URI), so a zipped install is not supported.
SPEC_DIR = Path(str(importlib.resources.files("contracts") / "openapi"))

# The documents this project writes and serves, by short name.
SPEC_FILES = {
    "letta": SPEC_DIR / "letta.yaml",
    "matrix": SPEC_DIR / "matrix.yaml",
    "control": SPEC_DIR / "mock-control.yaml",
}

Spec = dict[str, Any]


def spec_path(name_or_path: str | Path) -> Path:
    """A short name (`letta`, `matrix`, `control`) or a file path, as an absolute path."""
    if isinstance(name_or_path, str) and name_or_path in SPEC_FILES:
        return SPEC_FILES[name_or_path]
    path = Path(name_or_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no OpenAPI document at {path}")
    return path


def load_raw(name_or_path: str | Path) -> Spec:
    """The document as written, `$ref`s untouched (a fresh copy)."""
    path = spec_path(name_or_path)
    with path.open("rb") as fh:
        # The C loader parses our specs ~10x faster than the pure-Python one; start-up time matters.
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an OpenAPI document")
    return data


@functools.cache
def _resolved(path: Path) -> Spec:
    resolver = RefResolver(
        load_raw(path),
        path.as_uri(),
        resolve_types=RESOLVE_INTERNAL | RESOLVE_FILES,
    )
    resolver.resolve_references()
    specs: Spec = resolver.specs
    return specs


def load_resolved(name_or_path: str | Path) -> Spec:
    """The document with every `$ref` replaced by its target (shared, cached: do not mutate)."""
    return _resolved(spec_path(name_or_path))


def resolved_copy(name_or_path: str | Path) -> Spec:
    """A private, mutable copy of the resolved document."""
    return copy.deepcopy(load_resolved(name_or_path))


__all__ = [
    "SPEC_DIR",
    "SPEC_FILES",
    "Spec",
    "load_raw",
    "load_resolved",
    "resolved_copy",
    "spec_path",
]
