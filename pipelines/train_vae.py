#!/usr/bin/env python
"""Stage 2, train: the VAE on the extracted patches (or MNIST), to run_dir/checkpoints/{last,best}.pt.

Command line:
    python pipelines/train_vae.py --config FILE --run-dir DIR [--resume | --resume-if-same] [--set train.epochs=20 ...]
Several GPUs (or CPU processes with gloo), DistributedDataParallel:
    torchrun --nproc_per_node N pipelines/train_vae.py --config FILE --run-dir DIR
From Snakemake (rules/train.smk) with train.gpus > 1, this script relaunches itself under torchrun.
Under Snakemake the run continues from its own last.pt when that was made with the same settings and
data, and the rule's output (train/model.pt, a hard link to best.pt) appears only when training ends:
Snakemake deletes a failed job's outputs, and the checkpoints are not among them.
"""


import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.cli import config_from_args, run_rule, setup_logging, user_errors  # noqa: E402
from lidcvae.io import atomic_path, publish  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (defaults for every key left out)")
    parser.add_argument("--run-dir", required=True, type=Path, help="output folder (checkpoints, metrics, tensorboard)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from run-dir/checkpoints/last.pt if present, at this config's lr")
    resume.add_argument("--resume-if-same", action="store_true",
                        help="continue from last.pt only if it was made with the same settings and data, else start afresh")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. train.epochs=20 model.latent_size=128 (values parsed as YAML)")
    parser.add_argument("--log-file", "--log", dest="log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(args.log if rank == 0 else None, logging.INFO if rank == 0 else logging.WARNING)
    config = config_from_args(parser, args.config, args.set)
    return _train(config, args.run_dir, "same" if args.resume_if_same else args.resume)


def _train(config: dict, run_dir: Path, resume: bool | str) -> int:
    from lidcvae.train import NonFiniteError, train

    try:
        best = train(config, run_dir, resume)
    except NonFiniteError as error:
        logging.getLogger("train_vae").error("%s", error)
        return 3
    except user_errors() as error:
        logging.getLogger("train_vae").error("%s", error)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best checkpoint: {best}")
    return 0


def run_from_snakemake(smk) -> None:
    """rules/train.smk: one process, or torchrun with ``train.gpus`` GPU (``train.cpu_processes`` CPU) processes."""
    setup_logging(smk.log[0])
    code = run_rule(lambda: _train_rule(smk))
    if code == 0:
        publish(Path(smk.params.run_dir) / "checkpoints" / "best.pt", smk.output.best)
    sys.exit(code)


def _train_rule(smk) -> int:
    config = dict(smk.config)
    if smk.input.get("manifest"):
        config["train"] = {**config["train"], "manifest": str(smk.input.manifest)}
    run_dir = Path(smk.params.run_dir)
    gpus = int(config["train"]["gpus"])
    processes = gpus if gpus > 0 else int(config["train"]["cpu_processes"])
    if processes <= 1:
        return _train(config, run_dir, resume="same")
    if gpus == 0:
        config["train"] = {**config["train"], "device": "cpu"}
    requested = run_dir / "requested_config.yaml"
    with atomic_path(requested) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    # The original script, not Snakemake's copy (which would re-enter this function in every rank);
    # --log-file, because torchrun's parser would read an abbreviation like --log as its own option.
    script = Path(smk.scriptdir) / "train_vae.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", str(script),
               "--config", str(requested), "--run-dir", str(run_dir), "--resume-if-same", "--log-file", smk.log[0] + ".rank0"]
    return subprocess.call(command)


if __name__ == "__main__":
    if "snakemake" in globals():
        run_from_snakemake(snakemake)  # noqa: F821
    else:
        sys.exit(main())
