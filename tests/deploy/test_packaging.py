"""The images install Moked with `pip install --no-deps .` (not editable): every package
directory must be in pyproject's package list, or the container misses its code."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_directory_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = config["package-dir"]
    declared = set(config["packages"])
    found = set()
    for top, directory in package_dir.items():
        base = ROOT / directory
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(base).parts
            found.add(".".join((top, *relative)))
    assert sorted(found - declared) == [], "add these to [tool.setuptools] packages"
