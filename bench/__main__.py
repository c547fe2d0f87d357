"""`make bench`: run every benchmark, each in a fresh process, then write
docs/benchmarks.md and docs/benchmarks.png from the results.

    python -m bench [--quick] [--only pipeline,upload] [--report-only]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
# Order matters: the CPU-bound pipeline runs first, on a quiet machine.
SUITES = [
    "pipeline",
    "quality",
    "formats",
    "encoder_effort",
    "memory",
    "upload",
    "e2e",
    "overhead",
    "ready",
    "fixed_cost",
    "cost",
    "dedup",
    "placeholders",
    "tenancy",
    "crops",
    "on_demand",
]
QUICKLESS = {"quality", "memory"}  # already short
TITLES = {
    "pipeline": "1. Preview pipeline (one core)",
    "quality": "2. Quality guard: fast path against a full-resolution LANCZOS reference",
    "memory": "5. Worker peak memory",
    "encoder_effort": "16. Encoder effort by preview size: WebP method and AVIF speed",
    "formats": "6. Output formats side by side (encode ms, bytes, SSIM), and the whole job",
    "upload": "3. Upload acknowledgement: imagepipe against a bare FastAPI endpoint",
    "e2e": "4. End to end: upload → succeeded, local files and S3",
    "overhead": "7. Overhead per task beyond the imaging (one worker, one core)",
    "ready": "13. Ready and the whole set: a burst until succeeded, JPEG only and defaults",
    "fixed_cost": "15. The worker's fixed cost per task, in one process (no Celery)",
    "cost": "8. Cost per task, counted",
    "dedup": "9. Content dedup: what a duplicate upload costs",
    "placeholders": "10. Placeholders: BlurHash, ThumbHash and the dominant colour",
    "tenancy": "11. Per-key checks: what they cost an upload",
    "on_demand": "14. On-demand renditions over HTTP: first and cached requests",
    "crops": "12. Crops: the smart window beside libvips' attention, and one on-demand rendition",
}


def run_suite(name: str, quick: bool) -> bool:
    """Run one suite in a fresh process; False when it failed (a crash, or a suite
    that exits non-zero on a missed budget): the others still run."""
    argv = [sys.executable, "-m", f"bench.{name}"]
    if quick:
        reps = name in ("pipeline", "formats")
        argv += ["--reps", "3"] if reps else [] if name in QUICKLESS else ["--quick"]
    print(f"bench: {' '.join(argv[1:])}", flush=True)
    return subprocess.run(argv, cwd=ROOT, check=False).returncode == 0


def load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def chart(results: dict[str, Any]) -> Path | None:
    pipeline = results.get("pipeline")
    if not pipeline:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = pipeline["results"]
    samples = list(cells)
    methods = list(cells[samples[0]]["median_ms"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = [cells[s]["median_ms"].get(method) or 0 for s in samples]
        ax.bar([x + i * width for x in range(len(samples))], values, width, label=method)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(samples))], samples)
    ax.set_ylabel("ms per image (three previews), one core — lower is better")
    ax.set_title("imagepipe preview pipeline against the usual ways")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = DOCS / "benchmarks.png"
    fig.savefig(out, dpi=110)
    return out


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Each target against this run: (target, measured, met)."""
    rows: list[tuple[str, str, bool]] = []
    if pipeline := results.get("pipeline"):
        cell = pipeline["results"]["jpeg-12mp"]
        speed = cell["speedup_vs"]
        rows += [
            ("12 MP JPEG >= 3x the tutorial way", f"{speed['tutorial']:.2f}x",
             speed["tutorial"] >= 3),
            ("12 MP JPEG >= 1.0x libvips (pyvips)", f"{speed['pyvips']:.2f}x",
             speed["pyvips"] >= 1),
            ("12 MP JPEG within 1.6x of the decode floor", f"{cell['imagepipe_over_floor']:.2f}x",
             cell["imagepipe_over_floor"] <= 1.6),
        ]  # fmt: skip
    if quality := results.get("quality"):
        low = quality["min_ssim_pixels"]
        rows.append(("SSIM >= 0.98 for every size", f"lowest {low:.4f}", low >= 0.98))
    if upload := results.get("upload"):
        cells = {(r["size"], r["clients"], r["server"]): r for r in upload["summary"]}
        for size in ("2MB", "7MB"):
            bare, ours = cells[(size, 16, "bare")], cells[(size, 16, "imagepipe")]
            ratio = ours["p50_ms"] / bare["p50_ms"]
            rows.append((f"upload p50 <= 1.25x bare at 16 clients, {size}", f"{ratio:.2f}x",
                         ratio <= 1.25))  # fmt: skip
            probe = ours["healthz_p99_ms"]
            rows.append((f"/healthz p99 < 50 ms under 16 clients, {size}", f"{probe:.1f} ms",
                         probe < 50))  # fmt: skip
    if formats := results.get("formats"):
        for job in formats.get("whole_jobs", [formats.get("whole_job", {})]):
            if "speedup_vs_pyvips" in job:
                ratio = job["speedup_vs_pyvips"]
                kinds = job["renditions"].removesuffix(" x 3 variants")
                rows.append((f"12 MP JPEG, {kinds} renditions >= 1.0x pyvips", f"{ratio:.2f}x",
                             ratio >= 1))  # fmt: skip
    if placeholder := results.get("placeholders"):
        ms = placeholder["median_ms"]["all three (compute)"]
        rows.append(("placeholders <= 1 ms", f"{ms:.2f} ms", ms <= placeholder["target_ms"]))
    if ready := results.get("ready"):
        from bench.ready import TARGETS

        for backend, cell in ready["summary"].items():
            rows += [
                (f"JPEG only, ready >= 3x the tutorial way, {backend}",
                 f"{cell['vs_tutorial']:.2f}x", cell["vs_tutorial"] >= TARGETS["vs_tutorial"]),
                (f"JPEG only, ready >= 1.3x pyvips, {backend}",
                 f"{cell['vs_pyvips']:.2f}x", cell["vs_pyvips"] >= TARGETS["vs_pyvips"]),
                # Where the stage floors rule 1.3x out (section 13), the line not to cross.
                (f"JPEG only, ready >= 1.0x pyvips (the line), {backend}",
                 f"{cell['vs_pyvips']:.2f}x", cell["vs_pyvips"] >= 1.0),
                (f"defaults ready within 1.15x of JPEG only, {backend}",
                 f"{cell['defaults_over_jpeg']:.2f}x",
                 cell["defaults_over_jpeg"] <= TARGETS["defaults_over_jpeg"]),
                (f"whole set, worker CPU >= 1.0x pyvips, {backend}",
                 f"{cell['set_cpu']:.2f}x", cell["set_cpu"] >= TARGETS["set_cpu"]),
                (f"overhead <= 20% of the pipeline, {backend}",
                 f"{cell['overhead_share']:.0%}", cell["overhead_share"] <= 0.2),
            ]  # fmt: skip
    if crops := results.get("crops"):
        win = crops["windows"]
        ours, theirs = (win["whole_subject_kept"][k] for k in ("smart", "pyvips attention"))
        rows.append(("smart crop keeps an off-centre subject at least as often as libvips",
                     f"{ours} vs {theirs} of {win['scenes']}", ours >= theirs))  # fmt: skip
        ratio = crops["one_rendition"]["smart_vs_pyvips"]
        rows.append(("640x480 cover WebP from 12 MP >= 1.0x pyvips (imaging)", f"{ratio:.2f}x",
                     ratio >= 1))  # fmt: skip
    if memory := results.get("memory"):
        cells = memory["results"]
        peak = cells["jpeg-50mp"]["peak_mb"]
        rows.append(("worker peak RSS < 250 MB, 50 MP JPEG", f"{peak:.0f} MB", peak < 250))
        worst, name = max((cell["peak_mb"], name) for name, cell in cells.items())
        rows.append(("worker peak RSS < 250 MB, every input under the cap",
                     f"{worst:.0f} MB ({name})", worst < 250))  # fmt: skip
    if (e2e := results.get("e2e")) and "summary" in e2e:
        for backend, cells in e2e["summary"].items():
            scaling = cells["drain_images_per_s"]["ratio"]
            rows.append((f"2 worker processes >= 1.7x one, {backend}", f"{scaling:.2f}x",
                         scaling >= 1.7))  # fmt: skip
    if (overhead := results.get("overhead")) and "summary" in overhead:
        for backend, cell in overhead["summary"].items():
            share = cell["overhead_share"]
            rows.append((f"overhead <= 25% of the pipeline, {backend}", f"{share:.0%}",
                         share <= 0.25))  # fmt: skip
    return rows


def report(results: dict[str, Any]) -> str:
    parts = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` (each section says on which day) — "
        f"{platform.machine()}, {platform.python_version()}, 2 cores. Every ratio comes "
        "from one run on one machine, the compared methods interleaved; absolute numbers "
        "on this shared machine drift between runs, ratios much less.",
        "",
    ]
    # Each target with the day its suite last ran (suites run alone, on different days).
    dated = [
        (target, measured, ok, results[name].get("measured_on", "?"))
        for name in SUITES
        if name in results
        for target, measured, ok in targets({name: results[name]})
    ]
    if dated:
        parts += [
            "## Targets",
            "",
            "| target | figure | | measured |",
            "| --- | ---: | --- | --- |",
        ]
        parts += [
            f"| {t} | {m} | {'met' if ok else '**missed**'} | {day} |" for t, m, ok, day in dated
        ]
        parts.append("")
    if (DOCS / "benchmarks.png").exists() and results.get("pipeline"):
        parts += ["![Preview pipeline, ms per image](benchmarks.png)", ""]
    for name in SUITES:
        data = results.get(name)
        if data is None:
            continue
        module = importlib.import_module(f"bench.{name}")
        # The imaging suites keep their rows under "results", beside run metadata.
        rows = data["results"] if name in {"pipeline", "quality", "memory"} else data
        measured = f"Measured on {data['measured_on']}." if "measured_on" in data else ""
        parts += [f"## {TITLES[name]}", "", measured, "", module.markdown(rows), ""]
    # Hand-written reading of the numbers (why a target is missed), kept beside the code.
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():
        parts.append(notes.read_text())
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default=",".join(SUITES))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    failed = []
    if not args.report_only:
        failed = [name for name in args.only.split(",") if not run_suite(name, args.quick)]
    results = {name: load(name) for name in SUITES}
    chart(results)
    (DOCS / "benchmarks.md").write_text(report(results))
    print(f"bench: wrote {DOCS / 'benchmarks.md'}")
    if failed:
        print(f"bench: failed or over budget: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
