"""Peak memory of a render, measured in a fresh process: bounded by the decoded frame.

``bench/memory.py`` measures the same at the pixel cap; this test guards the rule at a
size that runs in a second: deep grey is shrunk before it is widened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imaging import images

_CHILD = """
import json, sys
from pathlib import Path
from imagepipe.imaging import RenderOptions, render_variants

def hwm_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")

render_variants(Path(sys.argv[1]), RenderOptions(boxes={"small": 16}))  # warm up imports
before = hwm_mb()
render_variants(Path(sys.argv[2]), RenderOptions(boxes={"large": 1200, "small": 150}))
print(json.dumps({"added_mb": hwm_mb() - before}))
"""


def _render_adds_mb(tiny: Path, path: Path) -> float:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    # VmHWM is reset by exec, so the child reports its own peak, not pytest's.
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tiny), str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    added: float = json.loads(out.stdout)["added_mb"]
    return added


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_peaks_near_its_decoded_size(tmp_path: Path, fmt: str) -> None:
    size = (4000, 3000)
    path = images.save(images.grey16(size), tmp_path / "g16", format=fmt)
    tiny = images.save(images.grey16((20, 20)), tmp_path / "tiny", format=fmt)
    decoded_mb = size[0] * size[1] * 2 / 2**20  # 23 MB as I;16
    # Widening to 32-bit at full size added 4x this (two 46 MB "I" buffers).
    assert _render_adds_mb(tiny, path) < 2 * decoded_mb


def test_animation_frames_are_decoded_one_at_a_time(tmp_path: Path) -> None:
    # 60 frames of 500x400: 48 MB as RGBA if all were held, 0.8 MB each.
    durations = [40] * 60
    path = images.animated(tmp_path / "anim.gif", durations, size=(500, 400))
    tiny = images.animated(tmp_path / "tiny.gif", [40, 40], size=(20, 16))
    assert _render_adds_mb(tiny, path) < 20
