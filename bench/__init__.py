"""Benchmarks for the imaging pipeline: run as ``python -m bench.pipeline`` etc."""

import importlib.util
import sys
from pathlib import Path

# Run from a checkout without installing the package: fall back to ./src.
if importlib.util.find_spec("imagepipe") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
