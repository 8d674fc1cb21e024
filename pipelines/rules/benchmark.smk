# The representation benchmark (benchmark.enabled; configs/benchmark/): on the run's cohort, one wildcard over
# model variants (each a complete config file in configs/benchmark/variants/), the untrained copy of the
# reference variant, a same-backbone contrastive encoder and the no-network baselines each write one feature
# table; the table rule probes every row on train + val and scores it once on the test patients.
wildcard_constraints:
    variant=r"[A-Za-z0-9_][A-Za-z0-9_.-]*",


# The run folder keeps checkpoints/, metrics.csv and tensorboard/ out of the outputs so a killed run resumes
# from its own last.pt (as rules/train.smk); model.pt is a hard link to best.pt made when training ends.
rule benchmark_train:
    input:
        manifest=MANIFEST,
        variant=VARIANTS / "{variant}.yaml",
    output:
        model=BENCH / "runs" / "{variant}" / "model.pt",
    params:
        run_dir=lambda wildcards, output: str(Path(output.model).parent),
    log:
        LOGS / "benchmark" / "train-{variant}.log",
    benchmark:
        BENCHMARKS / "benchmark" / "train-{variant}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=6 * 60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_train.py"


rule benchmark_variant_features:
    input:
        manifest=MANIFEST,
        checkpoint=rules.benchmark_train.output.model,
    output:
        features=FEATURES / "variant-{variant}.parquet",
        sidecar=FEATURES / "variant-{variant}.json",
    params:
        average_orientations=config["benchmark"]["average_orientations"],
    log:
        LOGS / "benchmark" / "features-{variant}.log",
    benchmark:
        BENCHMARKS / "benchmark" / "features-{variant}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_features.py"


rule benchmark_untrained:
    input:
        manifest=MANIFEST,
        variant=VARIANTS / f"{config['benchmark']['reference']}.yaml",
    output:
        features=FEATURES / "untrained.parquet",
        sidecar=FEATURES / "untrained.json",
    params:
        average_orientations=config["benchmark"]["average_orientations"],
    log:
        LOGS / "benchmark" / "untrained.log",
    benchmark:
        BENCHMARKS / "benchmark" / "untrained.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_features.py"


rule benchmark_baselines:
    input:
        manifest=MANIFEST,
    output:
        **baseline_rows(),
        sidecars=[_sidecar(path) for path in baseline_rows().values()],
    params:
        raw_pca=config["benchmark"]["raw_pca"],
        # raw voxels windowed as the CT model sees them (an MLP config has neither key; its runs have no benchmark)
        hu_window=config["model"].get("hu_window"),
        fill_hu=config["model"].get("context", {}).get("fill_hu"),
    log:
        LOGS / "benchmark" / "baselines.log",
    benchmark:
        BENCHMARKS / "benchmark" / "baselines.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_baselines.py"


rule benchmark_radiomics:
    input:
        manifest=MANIFEST,
    output:
        features=FEATURES / "radiomics.parquet",
        sidecar=FEATURES / "radiomics.json",
    params:
        first_order=config["benchmark"]["density_targets"],  # real CT: shape and first-order; rendered: shape only
    log:
        LOGS / "benchmark" / "radiomics.log",
    benchmark:
        BENCHMARKS / "benchmark" / "radiomics.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=4 * 60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_radiomics.py"


rule benchmark_contrastive:
    input:
        manifest=MANIFEST,
        variant=VARIANTS / f"{config['benchmark']['reference']}.yaml",
    output:
        checkpoint=BENCH / "runs" / "contrastive" / "model.pt",
        features=FEATURES / "contrastive.parquet",
        sidecar=FEATURES / "contrastive.json",
    params:
        average_orientations=config["benchmark"]["average_orientations"],
    log:
        LOGS / "benchmark" / "contrastive.log",
    benchmark:
        BENCHMARKS / "benchmark" / "contrastive.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=6 * 60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_contrastive.py"


rule benchmark_table:
    input:
        manifest=MANIFEST,
        features=benchmark_rows(),
        sidecars=[_sidecar(path) for path in benchmark_rows()],
    output:
        table_md=BENCH / "table.md",
        table_csv=BENCH / "table.csv",
    params:
        control="untrained",
    log:
        LOGS / "benchmark" / "table.log",
    benchmark:
        BENCHMARKS / "benchmark" / "table.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../benchmark_score.py"
