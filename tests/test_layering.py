"""The import contracts in pyproject.toml ([tool.importlinter]): the layers of
docs/architecture.md, what the API and imaging must never import, no import cycles.
`make lint` runs the same check; this test makes `make test` hold it too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold() -> None:
    # This checkout's sources, whatever the venv's editable install points at.
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    result = subprocess.run(
        [Path(sys.executable).with_name("lint-imports"), "--no-cache"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_process_loads_no_api_module() -> None:
    """What a static graph cannot see: the modules Celery imports by name at start."""
    code = (
        "import sys, imagepipe.worker.tasks, imagepipe.worker.webhooks; "
        "print(sorted(m for m in sys.modules if m.startswith('imagepipe.api')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
