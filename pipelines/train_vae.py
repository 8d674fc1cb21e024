#!/usr/bin/env python
"""Stage 2, train: the VAE on the extracted patches (or MNIST), to run_dir/checkpoints/{last,best}.pt.

Command line:
    python pipelines/train_vae.py --config FILE --manifest extract/manifest.parquet --run-dir DIR \
        [--resume | --resume-if-same] [--set train.epochs=20 ...]
Several GPUs (or CPU processes with gloo), DistributedDataParallel:
    torchrun --nproc_per_node N pipelines/train_vae.py --config FILE --run-dir DIR
From Snakemake (rules/train.smk) with train.gpus > 1, this script relaunches itself under torchrun.
Under Snakemake the run continues from its own last.pt when that was made with the same settings and
data, and the rule's outputs (train/model.pt and train/history.csv, hard links to best.pt and metrics.csv)
appear only when training ends: Snakemake deletes a failed job's outputs, and the checkpoints are not among them.
"""


import argparse
import logging
import os
from contextlib import nullcontext
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
import yaml

from lidcvae.io import atomic_path, publish
from lidcvae.workflow.cli import config_from_args, fail, run_script, setup_logging
from lidcvae.workflow.lock import folder_lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (defaults for every key left out)")
    parser.add_argument("--run-dir", required=True, type=Path, help="output folder (checkpoints, metrics, tensorboard)")
    parser.add_argument("--manifest", type=Path, help="extraction manifest (dataset lidc; not used for mnist)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from run-dir/checkpoints/last.pt if present, at this config's lr")
    resume.add_argument("--resume-if-same", action="store_true",
                        help="continue from last.pt only if it was made with the same settings and data, else start afresh")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help='override config keys, merged into the file as Snakemake\'s --config does: train.epochs=20, '
                             'model.latent_size=128 or "train={epochs: 20, lr: 1e-3}" (values parsed as YAML)')
    parser.add_argument("--log-file", "--log", dest="log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(args.log if rank == 0 else None, logging.INFO if rank == 0 else logging.WARNING)
    run = config_from_args(parser, args.config, args.set)
    if run.dataset == "lidc" and args.manifest is None:
        fail("--manifest is required for dataset lidc")
    # One training per run directory; torchrun's other ranks write nothing there (rank 0 holds it for them).
    with folder_lock(args.run_dir, "training") if rank == 0 else nullcontext():
        best = _train(run, args.run_dir, "same" if args.resume_if_same else args.resume, args.manifest)
    if rank == 0:
        print(f"best checkpoint: {best}")
    return 0


def _train(run, run_dir: Path, resume: bool | str, manifest: Path | None) -> Path:
    from lidcvae.train import train

    return train(run, run_dir, resume, manifest)


def run_from_snakemake(smk) -> None:
    """rules/train.smk: one process, or torchrun with ``train.gpus`` GPU (``train.cpu_processes`` CPU) processes.
    Runs holding the run directory's lock (``run_script``'s ``lock``), which torchrun's processes inherit."""
    code = _train_rule(smk)
    if code != 0:
        fail(f"training processes exited with status {code}; their log: {smk.log[0]}.rank0", code)
    publish(Path(smk.params.run_dir) / "checkpoints" / "best.pt", smk.output.best)
    publish(Path(smk.params.run_dir) / "metrics.csv", smk.output.history)


def _train_rule(smk) -> int:
    from dataclasses import replace

    from lidcvae.run_config import RunConfig
    from lidcvae.train.distributed import process_count, relaunch_under_torchrun

    run = RunConfig.from_mapping(smk.config, source="snakemake config")
    manifest = smk.input.get("manifest")
    run_dir = Path(smk.params.run_dir)
    processes = process_count(run.train.gpus, run.train.cpu_processes)
    if processes == 1:
        _train(run, run_dir, resume="same", manifest=manifest)
        return 0
    if run.train.gpus == 0:
        run = replace(run, train=replace(run.train, device="cpu"))
    requested = run_dir / "requested_config.yaml"
    with atomic_path(requested) as tmp:
        tmp.write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    # The original script, not Snakemake's copy (which would re-enter this function in every rank).
    args = ["--config", requested, "--run-dir", run_dir, "--resume-if-same", "--log-file", smk.log[0] + ".rank0"]
    return relaunch_under_torchrun(Path(smk.scriptdir) / "train_vae.py", args + (["--manifest", manifest] if manifest else []),
                                   processes)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals(), lock=lambda smk: (smk.params.run_dir, "training"))
