"""requirements.txt pins what pyproject.toml pins: the container and pip agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    name = re.split(r"[\[=<>~!; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def test_requirements_agree_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins((ROOT / "requirements.txt").read_text().splitlines())
    dev = _pins((ROOT / "requirements-dev.txt").read_text().splitlines())
    bench = _pins((ROOT / "requirements-bench.txt").read_text().splitlines())
    extras = project["optional-dependencies"]
    for group, pinned in [
        (project["dependencies"], runtime),
        (extras["dev"], dev),
        (extras["bench"], bench),
    ]:
        for requirement in group:
            assert "==" in requirement, f"{requirement} is not pinned"
            version = requirement.split("==", 1)[1]
            assert pinned.get(_name(requirement)) == version, requirement
