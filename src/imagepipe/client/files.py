"""The files an upload names: files, and folders searched recursively."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every file under the folders named (hidden entries of a
    folder, such as .DS_Store, are skipped; a file named explicitly never is)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if not name.startswith(".") and candidate.is_file():
                        found.append(candidate)
        elif path.is_file():
            found.append(path)
    return list(dict.fromkeys(found))  # a file named twice is uploaded once
