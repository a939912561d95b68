"""Unit tests run on a private cache: they never read or write the user's runs, adapters,
bindings, checkpoints or server records (the App stores runs by default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("brickwork-unit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRICKWORK_CACHE_DIR", str(root))
        patch.delenv("BRICKWORK_STATE_DIR", raising=False)
        patch.delenv("BRICKWORK_BINDINGS", raising=False)
        patch.setenv("BRICKWORK_LARGE", "off")
        yield root
