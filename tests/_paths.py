"""Where the shared reference data lives: `shared/data` beside the repository (as in CI)."""

from __future__ import annotations

import os
from pathlib import Path

#: The training splits in ../shared/data (read at test time, never copied into the project).
SHARED_DATA = Path(
    os.environ.get("BRICKWORK_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
