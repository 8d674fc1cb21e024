"""Each shipped config gives the workflow the model it says it does, and nothing of the demo's leaks in.

`snakemake -n` prints the effective model section (pipelines/rules/common.smk); these tests read it
for every file in configs/ and hold it against (a) the file's own model section over the schema
defaults, with nothing else mixed in, and (b) what the file's comment and the README claim of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lidcvae.config import section_defaults, section_schema, validate_config, yaml_load

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
MODEL_LINE = "lidcvae: effective model section: "

# What each config's header comment (and the README, where it speaks of the file) promises the model is.
# Keys are dotted paths in the model section; a config added to configs/ must add its promise here.
FULL_SIZE = [32, 64, 128, 256]
PROMISES: dict[str | None, dict[str, object]] = {
    # No --configfile: the embedded demo, 3 voxels of context, no mask pooling, no decoded histogram.
    None: {"context.dilate_voxels": 3, "mask_pooling": "off", "histogram_view": "off", "input_size": 32},
    "demo.yaml": {"context.dilate_voxels": 3, "mask_pooling": "off", "histogram_view": "off", "input_size": 32},
    # README: "configs/lidc.yaml uses the same settings [as the schema defaults] at full size".
    "lidc.yaml": {"channels": FULL_SIZE, "mask_pooling": "default", "histogram_view": "default",
                  "context": "default", "mask_channel": True, "input_size": 32},
    # "A training-scale phantom ... and the full-size model."
    "phantom-large.yaml": {"channels": FULL_SIZE, "mask_pooling": "default", "histogram_view": "default"},
    # "the whole 64³ patch as input, one channel (HU only), a uniform sum-reduced squared error"
    "seed-recipe.yaml": {"input_size": 64, "mask_channel": False, "mask_pooling": "off", "histogram_view": "off",
                         "context.kind": "full", "reconstruction_weight.kind": "uniform"},
    # "No readers, so no consensus mask: ... weight a centred Gaussian and keep the whole patch."
    "coordinates.yaml": {"mask_channel": False, "mask_pooling": "off", "histogram_view": "off",
                         "context.kind": "full", "reconstruction_weight.kind": "gaussian", "input_size": 64},
    # "784-400-20 MLP VAE, Bernoulli decoder"
    "mnist.yaml": {"name": "mlp_vae", "hidden_sizes": [400], "latent_size": 20, "likelihood": "bernoulli"},
    # "784-h-h-z MLP VAE (two hidden ReLU layers each side), Bernoulli decoder"
    "mnist-table.yaml": {"name": "mlp_vae", "hidden_sizes": [400, 400], "latent_size": 20, "likelihood": "bernoulli"},
}


def _effective_model(configfile: str | None, tmp_path: Path) -> dict:
    """The model section `snakemake -n` resolves for a shipped config (None: no --configfile)."""
    args = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(tmp_path),
            "-n", "--cores", "1"]
    if configfile:
        args += ["--configfile", str(REPO / "configs" / configfile)]
    if configfile == "coordinates.yaml":  # its table and images must exist for the plan
        args += ["--config", f"candidates={SHARED / 'lidc-whole' / 'luna16_annotations.csv'}",
                 f"images_root={SHARED / 'lidc-whole'}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(MODEL_LINE)]
    assert lines, result.stderr[-3000:]
    return json.loads(lines[0][len(MODEL_LINE):])


def _at(section: dict, dotted: str):
    for part in dotted.split("."):
        section = section[part]
    return section


def _is_off(part: str, value: dict) -> bool:
    """Whether an optional model part is switched off, in the schema's own spelling of off."""
    if "enabled" in value:
        return value["enabled"] is False
    if part == "mask_pooling":
        return not value["levels"] and value["histogram_bins"] == 0
    return value["bins"] == 0


def test_every_shipped_config_has_a_promise():
    assert set(CONFIGS) == {name for name in PROMISES if name}, "add the new config's promise to PROMISES"


@pytest.mark.parametrize("configfile", [None, *CONFIGS])
def test_effective_model_is_the_file_over_the_schema_defaults(configfile, tmp_path):
    """Exactly the file's model keys over the schema defaults (nothing from configs/demo.yaml), and the
    file's comment's promises."""
    if configfile == "coordinates.yaml" and not (SHARED / "lidc-whole").is_dir():
        pytest.skip("../shared/data/lidc-whole is absent")
    model = _effective_model(configfile, tmp_path)
    source = REPO / "configs" / (configfile or "demo.yaml")
    own = (yaml_load(source.read_text()) or {}).get("model", {})
    assert model == validate_config({"model": own})["model"]
    defaults = section_defaults("model")
    for key, promise in PROMISES[configfile].items():
        if key == "*":
            assert model == defaults
        elif promise == "default":
            assert _at(model, key) == _at(defaults, key), key
        elif promise == "off":
            assert _is_off(key, _at(model, key)), (key, _at(model, key))
        else:
            assert _at(model, key) == promise, key


def test_demo_settings_do_not_reach_a_config_that_does_not_name_them(tmp_path):
    """The defect of issue 29: configs/lidc.yaml trained without mask pooling because the demo turned it off."""
    demo = yaml_load((REPO / "configs" / "demo.yaml").read_text())["model"]
    lidc = _effective_model("lidc.yaml", tmp_path)
    defaults = section_defaults("model")
    assert "mask_pooling" in demo and "mask_pooling" not in yaml_load((REPO / "configs" / "lidc.yaml").read_text())["model"]
    assert lidc["mask_pooling"] == defaults["mask_pooling"] != validate_config({"model": demo})["model"]["mask_pooling"]
    assert section_schema("model.mask_pooling")  # the key the demo switches still exists in the schema


def test_command_line_config_overrides_the_demo(tmp_path):
    """--config without --configfile still starts from the demo, then overrides it."""
    args = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(tmp_path),
            "-n", "--cores", "1", "--config", "model={latent_size: 8}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stderr.splitlines() if line.startswith(MODEL_LINE))
    model = json.loads(line[len(MODEL_LINE):])
    assert model["latent_size"] == 8
    assert model["context"]["dilate_voxels"] == 3  # the demo's, kept beside the override
