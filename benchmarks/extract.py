#!/usr/bin/env python
"""Benchmark: phantom writing speed, and our extraction against pylidc's own route and the decode floor.

    python benchmarks/extract.py [--cohort phantom|real|both] [--n-scans 4] [--real DIR] [--repeats 3] [--work DIR]

Phantom cohort (``--n-scans`` scans written first). Each route runs in a fresh process (peak RSS is that
process's, measured with getrusage):
  ours   lidcvae.extract.extract_cohort (index once, read the slab around each nodule, 64³ at 1 mm)
  pylidc for every annotation ``ann.uniform_cubic_resample(63)`` (pylidc loads the scan for each)
Each route is timed untraced, then run again under tracemalloc for the peak of Python/NumPy allocations.

Real series (``--real``, default ../shared/data/lidc-whole: LIDC-IDRI-0001, 133 slices, 1 nodule): the
two routes above and the decode floor (pydicom reads every file of the tree and decodes its pixels to
HU, nothing else), each in a fresh process per repeat, the three interleaved, imports done before
the clock starts; best and median of ``--repeats``. Ours is also split into its phases.
Prints Markdown tables for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import statistics
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
    table = write_phantom_cohort(out_dir, PhantomConfig.from_mapping({"n_scans": n_scans, "workers": 1}))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "slices": int(table["slices"].sum()), "bytes": int(table["bytes"].sum()),
            "scans": len(table), "max_slices": int(table["slices"].max()), "series": list(table["series_instance_uid"]),
            "build_s": float(table["build_s"].sum()), "write_s": float(table["write_s"].sum())}  # fmt: skip


def _ours(dicom_root: str, out_dir: str, trace: bool) -> dict:
    import lidcvae.config  # noqa: F401 - imported before the clock, as pylidc and pydicom in the other routes
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


def _decode_floor(dicom_root: str) -> dict:
    """Read every DICOM file under the root and decode its pixels to HU (pydicom's modality LUT)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    files = sorted(Path(dicom_root).rglob("*.dcm"))
    started = time.perf_counter()
    for path in files:
        dataset = pydicom.dcmread(path)
        apply_modality_lut(dataset.pixel_array, dataset)
    return {"seconds": time.perf_counter() - started, "slices": len(files)}


#: Ours, phase by phase: (module, function, phase). Wrapped in the benchmark's child process only.
_PHASES = [
    ("lidcvae.extract.cohort", "index_dicom_tree", "header index (every file)"),
    ("lidcvae.extract.scan", "series_geometry", "series check"),
    ("lidcvae.lidc", "scan_record", "pylidc: scan record"),
    ("lidcvae.lidc", "nodule_annotations", "pylidc: clusters + consensus"),
    ("lidcvae.extract.series", "_read_hu", "decode slab slices to HU"),
    ("lidcvae.extract.scan", "sample", "resample image + mask"),
    ("lidcvae.extract.scan", "write_nifti", "NIfTI writes (gzip)"),
    ("lidcvae.extract.cohort", "write_parquet", "index + part tables (parquet)"),
    ("lidcvae.extract.cohort", "gather_manifest", "gather manifest (parquet)"),
    ("lidcvae.config", "validate_config", "config validation"),
]


def _ours_phases(dicom_root: str, out_dir: str) -> dict:
    import importlib

    import lidcvae.config  # noqa: F401
    from lidcvae import lidc
    from lidcvae.extract import extract_cohort

    lidc.pylidc()
    phases: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for module_name, function_name, phase in _PHASES:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)

        @functools.wraps(function)
        def timed(*args, _function=function, _phase=phase, **kwargs):
            started = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                phases[_phase] += time.perf_counter() - started
                counts[_phase] += 1

        setattr(module, function_name, timed)
    started = time.perf_counter()
    manifest, _ = extract_cohort(dicom_root, out_dir, None, workers=1, progress=False)
    return {"seconds": time.perf_counter() - started, "nodules": len(manifest), "phases": dict(phases), "counts": dict(counts)}


def _real_series(dicom_root: Path, work: Path, repeats: int) -> None:
    from lidcvae.extract.dicom_index import index_dicom_tree

    index, _ = index_dicom_tree(dicom_root, progress=False)
    series = sorted(index["series_instance_uid"].unique())
    runs: dict[str, list[dict]] = collections.defaultdict(list)
    for repeat in range(repeats):  # interleaved, so load from other jobs hits all three alike
        runs["floor"].append(_in_child(_decode_floor, str(dicom_root)))
        runs["ours"].append(_in_child(_ours, str(dicom_root), str(work / f"real-ours-{repeat}"), False))
        runs["pylidc"].append(_in_child(_pylidc, str(dicom_root), series, False))
    phased = _in_child(_ours_phases, str(dicom_root), str(work / "real-phases"))
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nreal series: {dicom_root} ({len(index)} slices, {len(series)} series, {runs['ours'][0]['nodules']} nodule(s), "
          f"{runs['pylidc'][0]['annotations']} annotations); {repeats} interleaved repeats; load average {load:.1f}")  # fmt: skip
    print("| route | s best | s median | best / decode floor | median / decode floor |")
    print("|---|---|---|---|---|")
    for name, label in (("floor", "decode floor: pydicom read + decode every slice to HU"),
                        ("ours", "lidcvae extract_cohort (index, slab, 64³ patches, manifest)"),
                        ("pylidc", "pylidc uniform_cubic_resample(63) per annotation")):  # fmt: skip
        print(f"| {label} | {best[name]:.2f} | {median[name]:.2f} | {best[name] / best['floor']:.2f}× | {median[name] / median['floor']:.2f}× |")
    print(f"pylidc / ours: {best['pylidc'] / best['ours']:.1f}× (best), {median['pylidc'] / median['ours']:.1f}× (median)")
    print(f"\nours by phase (one more run, {phased['seconds']:.2f} s; phases nest: config validation runs inside the gather too)")
    print("| phase | calls | s | share of ours |")
    print("|---|---|---|---|")
    for phase, seconds in sorted(phased["phases"].items(), key=lambda item: -item[1]):
        print(f"| {phase} | {phased['counts'][phase]} | {seconds:.3f} | {seconds / phased['seconds']:.0%} |")


def _phantom(work: Path, n_scans: int) -> None:
    written = _in_child(_write, str(work / "dicom"), n_scans)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", choices=["phantom", "real", "both"], default="both")
    parser.add_argument("--n-scans", type=int, default=4)
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "lidc-whole",
                        help="a real DICOM tree (default ../shared/data/lidc-whole)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the real-series routes")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lidcvae-bench-"))
    if args.cohort in ("phantom", "both"):
        _phantom(work, args.n_scans)
    if args.cohort in ("real", "both"):
        if not args.real.is_dir():
            sys.exit(f"real DICOM tree not found: {args.real} (pass --real DIR or --cohort phantom)")
        _real_series(args.real, work, args.repeats)


if __name__ == "__main__":
    main()
