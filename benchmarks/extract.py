#!/usr/bin/env python
"""Benchmark: phantom writing speed, and our extraction against pylidc's own route, on one phantom cohort.

    python benchmarks/extract.py [--n-scans 4] [--work DIR]

Each route runs in a fresh process (peak RSS is that process's, measured with getrusage):
  ours   lidcvae.extract.extract_cohort (index once, read the slab around each nodule, 64³ at 1 mm)
  pylidc for every annotation ``ann.uniform_cubic_resample(63)`` (pylidc loads the scan for each)
Each route is timed untraced, then run again under tracemalloc for the peak of Python/NumPy allocations.
Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _traced_peak_mb() -> float:
    """Peak of Python and NumPy allocations since tracing started (what the route itself holds)."""
    return tracemalloc.get_traced_memory()[1] / 2**20


def _write(out_dir: str, n_scans: int) -> dict:
    from lidcvae.phantom import PhantomConfig, write_phantom_cohort

    started = time.perf_counter()
    table = write_phantom_cohort(out_dir, PhantomConfig(n_scans=n_scans, workers=1))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "slices": int(table["slices"].sum()), "bytes": int(table["bytes"].sum()),
            "scans": len(table), "max_slices": int(table["slices"].max()), "series": list(table["series_instance_uid"]),
            "build_s": float(table["build_s"].sum()), "write_s": float(table["write_s"].sum())}  # fmt: skip


def _ours(dicom_root: str, out_dir: str, trace: bool) -> dict:
    from lidcvae import lidc
    from lidcvae.extract import extract_cohort

    lidc.pylidc()  # imported before tracing, as in the pylidc route: imports are not the extraction's memory
    baseline = _peak_rss_mb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    manifest, _ = extract_cohort(dicom_root, out_dir, None, workers=1, progress=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "nodules": len(manifest), "rss_mb": _peak_rss_mb(), "baseline_mb": baseline, "traced_mb": _traced_peak_mb()}


def _pylidc(dicom_root: str, series: list[str], trace: bool) -> dict:
    from lidcvae import lidc

    lidc.use_dicom_root(dicom_root)
    lidc.pylidc()
    baseline = _peak_rss_mb()
    if trace:
        tracemalloc.start()
    started, annotations, nodules = time.perf_counter(), 0, 0
    for uid in series:
        scan = lidc.scan_by_series(uid)
        nodules += len(scan.cluster_annotations(verbose=False))
        for annotation in scan.annotations:
            annotation.uniform_cubic_resample(63, verbose=False)
            annotations += 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "nodules": nodules, "annotations": annotations, "rss_mb": _peak_rss_mb(), "baseline_mb": baseline, "traced_mb": _traced_peak_mb()}


def _in_child(function, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-scans", type=int, default=4)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lidcvae-bench-"))
    written = _in_child(_write, str(work / "dicom"), args.n_scans)
    # Timed untraced; peak allocations from a second, traced run (tracing slows pylidc's route most).
    ours = _in_child(_ours, str(work / "dicom"), str(work / "extract"), False)
    theirs = _in_child(_pylidc, str(work / "dicom"), written["series"], False)
    ours["traced_mb"] = _in_child(_ours, str(work / "dicom"), str(work / "extract-traced"), True)["traced_mb"]
    theirs["traced_mb"] = _in_child(_pylidc, str(work / "dicom"), written["series"], True)["traced_mb"]
    volume_mb = written["max_slices"] * 512 * 512 * 2 / 2**20
    per_ours, per_theirs = ours["seconds"] / ours["nodules"], theirs["seconds"] / theirs["nodules"]
    print(f"phantom: {written['scans']} scans, {written['slices']} slices in {written['seconds']:.1f} s (1 process) = "
          f"{written['slices'] / written['seconds']:.1f} slices/s (build {written['build_s']:.1f} s, encode+write "
          f"{written['write_s']:.1f} s); {written['bytes'] / written['scans'] / 2**20:.1f} MiB per scan, "
          f"{written['bytes'] / written['slices'] / 2**10:.0f} KiB per slice")  # fmt: skip
    print("| route | nodules | s total | s / nodule | peak RSS (MiB) | RSS above imports (MiB) | peak traced allocations (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for name, run, per in (("lidcvae extract_cohort", ours, per_ours), ("pylidc uniform_cubic_resample(63) per annotation", theirs, per_theirs)):
        print(f"| {name} | {run['nodules']} | {run['seconds']:.1f} | {per:.2f} | {run['rss_mb']:.0f} | {run['rss_mb'] - run['baseline_mb']:.0f} | {run['traced_mb']:.0f} |")
    print(f"speed-up {per_theirs / per_ours:.1f}×; largest scan volume (int16) {volume_mb:.0f} MiB; "
          f"pylidc annotations {theirs['annotations']}")  # fmt: skip


if __name__ == "__main__":
    main()
