"""Hypothesis settings profiles: `ci` (quick and deterministic, part of `make test`) and `fuzz` (long, for
`make fuzz`). The example database lives in `CONTRACTS_HYPOTHESIS_DB` when set (a directory or a redis://
URL, `contracts.databases`), so CI workers can share it."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import ExampleDatabase, InMemoryExampleDatabase

from contracts.databases import open_database

# Generating whole response bodies is slower than Hypothesis expects of a strategy; that is the work.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


def example_database() -> ExampleDatabase:
    location = os.environ.get("CONTRACTS_HYPOTHESIS_DB")
    return open_database(location) if location else InMemoryExampleDatabase()


def register_profiles() -> None:
    settings.register_profile(
        "ci",
        max_examples=8,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=_SLOW_IS_FINE,
    )
    settings.register_profile(
        "fuzz",
        max_examples=200,
        deadline=None,
        # Explicit: under CI=true Hypothesis's own default derandomizes, which allows no example database.
        derandomize=False,
        database=example_database(),
        print_blob=True,
        suppress_health_check=_SLOW_IS_FINE,
    )


def load_profile(default: str = "ci") -> str:
    """Register the profiles and load `HYPOTHESIS_PROFILE` (default: `ci`); returns the name loaded."""
    register_profiles()
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    settings.load_profile(name)
    return name
