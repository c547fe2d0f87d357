"""Layering is one-directional: api -> services -> imaging/storage/db; worker -> services.
Nothing below the API, and not the worker, imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "imagepipe"
BELOW_THE_API = ["worker", "services", "imaging", "storage", "db"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", BELOW_THE_API)
def test_layer_never_imports_the_api(layer: str) -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imports(path) if name.startswith("imagepipe.api")
        )
        for path in (PACKAGE / layer).rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_worker_process_loads_no_api_module() -> None:
    code = (
        "import sys, imagepipe.worker.tasks, imagepipe.worker.webhooks; "
        "print(sorted(m for m in sys.modules if m.startswith('imagepipe.api')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
