# lidcvae: LIDC-IDRI DICOM → 64³ nodule patches → 3D VAE → latent embeddings, montages, report.
# `snakemake --cores 8` runs the embedded phantom cohort; see README.md for a real download and MNIST.
from snakemake.utils import min_version

min_version("9.0")


configfile: "configs/default.yaml"


include: "pipelines/rules/common.smk"
include: "pipelines/rules/phantom.smk"
include: "pipelines/rules/extract.smk"
include: "pipelines/rules/train.smk"
include: "pipelines/rules/embed.smk"
include: "pipelines/rules/evaluate.smk"
include: "pipelines/rules/mnist.smk"


rule all:
    input:
        final_outputs,
    default_target: True
