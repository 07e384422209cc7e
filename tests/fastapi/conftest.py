"""Fixtures of the FastAPI tests: a fresh pool manager per test (so that each test's pools,
aliases and connection counts are its own), on the real servers of ``tests/conftest.py``."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")

from ferrite_integrations import PoolManager

_names = itertools.count()


@pytest.fixture
def client_name() -> str:
    """A ``CLIENT SETNAME`` of this test's own: the server counts its connections by it."""
    return f"fastapi-test-{os.getpid()}-{next(_names)}"


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name="fastapi-tests")
    yield manager
    manager.close()
