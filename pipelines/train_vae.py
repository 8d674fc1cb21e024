#!/usr/bin/env python
"""Stage 2, train: the VAE on the extracted patches (or MNIST), to run_dir/checkpoints/{last,best}.pt.

Command line:
    python pipelines/train_vae.py --config FILE --run-dir DIR [--resume] [--set train.epochs=20 ...]
Several GPUs (or CPU processes with gloo), DistributedDataParallel:
    torchrun --nproc_per_node N pipelines/train_vae.py --config FILE --run-dir DIR
From Snakemake (rules/train.smk) with train.gpus > 1, this script relaunches itself under torchrun.
"""


import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.cli import config_from_args, setup_logging  # noqa: E402
from lidcvae.io import atomic_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (defaults for every key left out)")
    parser.add_argument("--run-dir", required=True, type=Path, help="output folder (checkpoints, metrics, tensorboard)")
    parser.add_argument("--resume", action="store_true", help="continue from run-dir/checkpoints/last.pt if present")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. train.epochs=20 model.latent_size=128 (values parsed as YAML)")
    parser.add_argument("--log-file", "--log", dest="log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(args.log if rank == 0 else None, logging.INFO if rank == 0 else logging.WARNING)
    config = config_from_args(parser, args.config, args.set)
    return _train(config, args.run_dir, args.resume)


def _train(config: dict, run_dir: Path, resume: bool) -> int:
    from lidcvae.train import NonFiniteError, train

    try:
        best = train(config, run_dir, resume)
    except NonFiniteError as error:
        logging.getLogger("train_vae").error("%s", error)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best checkpoint: {best}")
    return 0


def run_from_snakemake(smk) -> None:
    """rules/train.smk: one process, or torchrun with ``train.gpus`` GPU (``train.cpu_processes`` CPU) processes."""
    setup_logging(smk.log[0])
    config = dict(smk.config)
    if smk.input.get("manifest"):
        config["train"] = {**config["train"], "manifest": str(smk.input.manifest)}
    run_dir = Path(smk.params.run_dir)
    gpus = int(config["train"]["gpus"])
    processes = gpus if gpus > 0 else int(config["train"]["cpu_processes"])
    if processes <= 1:
        sys.exit(_train(config, run_dir, resume=False))
    if gpus == 0:
        config["train"] = {**config["train"], "device": "cpu"}
    requested = run_dir / "requested_config.yaml"
    with atomic_path(requested) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    # The original script, not Snakemake's copy (which would re-enter this function in every rank);
    # --log-file, because torchrun's parser would read an abbreviation like --log as its own option.
    script = Path(smk.scriptdir) / "train_vae.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", str(script),
               "--config", str(requested), "--run-dir", str(run_dir), "--log-file", smk.log[0] + ".rank0"]
    sys.exit(subprocess.call(command))


if __name__ == "__main__":
    if "snakemake" in globals():
        run_from_snakemake(snakemake)  # noqa: F821
    else:
        sys.exit(main())
