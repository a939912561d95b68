"""Run mypy --strict on the `brickwork` package as it is installed (folders mapped by package-dir).

mypy cannot follow setuptools' editable-install import hooks, so this builds a tree of symlinks
under build/typecheck/brickwork/ that mirrors the package-dir mapping in pyproject.toml, and
checks that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Build the symlink tree and run mypy on it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    (ROOT / "build").mkdir(exist_ok=True)
    # A fresh tree per run, so two checks running at once do not pull it from under each other.
    tree = Path(tempfile.mkdtemp(prefix="typecheck-", dir=ROOT / "build"))
    try:
        return _check(tree, mapping)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _check(tree: Path, mapping: dict[str, str]) -> int:
    core = tree / "brickwork"
    core.mkdir(parents=True)
    for item in (ROOT / mapping["brickwork"]).iterdir():
        if item.name != "__pycache__":
            (core / item.name).symlink_to(item)
    for package, folder in mapping.items():
        if package != "brickwork":
            (tree / package.replace(".", "/")).symlink_to(ROOT / folder)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
        "-p",
        "brickwork",
    ]
    return subprocess.run(cmd, cwd=tree, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
