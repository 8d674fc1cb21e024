"""The benchmark's contrastive row (lidcvae/benchmark/contrastive.py): NT-Xent, the views, training on the real
sample patches, the checkpoint and the orientation-averaged features."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_train_data import TINY_MODEL, sample_manifest  # noqa: F401  (fixture)

from lidcvae.benchmark.contrastive import (
    ContrastiveEncoder, embed_contrastive, jitter_intensity, nt_xent_loss, train_contrastive, two_views,
)
from lidcvae.benchmark.settings import ContrastiveConfig
from lidcvae.data.augment import orientations
from lidcvae.embed import encode_batches
from lidcvae.models import build_model
from lidcvae.run_config import RunConfig
from lidcvae.train.checkpoint import read_checkpoint
from lidcvae.train.config import Augment

REPO = Path(__file__).resolve().parents[1]

# The tiny model of the train tests, and the benchmark's tiny variant's options (mask channel, pooled head).
MODELS = {
    "image only": TINY_MODEL,
    "mask channel, pooled head": {**TINY_MODEL, "mask_channel": True, "context": {"kind": "nodule"},
                                  "mask_pooling": {"enabled": True, "levels": [0, 1], "histogram_bins": 16},
                                  "histogram_view": {"enabled": True}},
}


def _variant(model: dict, **train: object) -> RunConfig:
    settings = {"seed": 3, "device": "cpu", "progress": False, "threads": 1, **train}
    return RunConfig.from_mapping({"dataset": "lidc", "model": copy.deepcopy(model), "train": settings})


def _settings(**values: object) -> ContrastiveConfig:
    return ContrastiveConfig.from_mapping({"epochs": 6, "batch_size": 8, "lr": 3e-3, "temperature": 0.5,
                                           "projection_size": 4, **values})


def _hand_nt_xent(views: list[list[float]], temperature: float) -> float:
    """Eq. 1 of arXiv 2002.05709 written out: views 0..N−1 are the first views, N..2N−1 the second."""
    unit = [[v / math.hypot(*row) for v in row] for row in views]
    count = len(unit) // 2
    similarity = [[sum(a * b for a, b in zip(u, w)) / temperature for w in unit] for u in unit]
    terms = []
    for i in range(2 * count):
        positive = (i + count) % (2 * count)
        denominator = sum(math.exp(similarity[i][k]) for k in range(2 * count) if k != i)
        terms.append(-math.log(math.exp(similarity[i][positive]) / denominator))
    return sum(terms) / len(terms)


def test_nt_xent_equals_the_hand_computed_value_on_two_pairs():
    first, second = [[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [0.0, 1.0]]
    loss = nt_xent_loss(torch.tensor(first), torch.tensor(second), temperature=0.5)
    assert loss.item() == pytest.approx(_hand_nt_xent(first + second, 0.5), rel=1e-6)
    # unit views e1, e2 | (e1 + e2)/√2, e2; similarity / τ = 2·cos. Anchor 0: positive √2, others 0, 0;
    # anchors 1 and 3: positive 2, others 0, √2; anchor 2: positive √2, others √2, √2.
    root2 = math.sqrt(2)
    anchors = [math.log(2 + math.exp(root2)) - root2, math.log(math.exp(2) + 1 + math.exp(root2)) - 2, math.log(3)]
    assert loss.item() == pytest.approx((anchors[0] + 2 * anchors[1] + anchors[2]) / 4, rel=1e-6)
    assert loss.item() == pytest.approx(0.63667, abs=1e-5)


def test_nt_xent_is_lowest_when_each_view_matches_its_pair():
    views = torch.eye(4)
    assert nt_xent_loss(views, views, 0.1) < nt_xent_loss(views, views.roll(1, 0), 0.1)


def test_jitter_changes_the_image_channel_only_within_the_window():
    patches = torch.cat([torch.rand(3, 1, 4, 4, 4), (torch.rand(3, 1, 4, 4, 4) > 0.5).float()], dim=1)
    jittered = jitter_intensity(patches, torch.Generator().manual_seed(0), 0.2)
    assert torch.equal(jittered[:, 1], patches[:, 1])
    assert not torch.allclose(jittered[:, 0], patches[:, 0])
    assert jittered.min() >= 0 and jittered.max() <= 1
    assert torch.equal(jitter_intensity(patches, torch.Generator(), 0.0), patches)


def test_the_untrained_encoder_is_the_reference_vaes_encoder():
    """Same model section and seed: the representation before training is the untrained control's μ."""
    model_config = _variant(MODELS["mask channel, pooled head"]).model
    torch.manual_seed(5)
    vae = build_model(model_config).eval()
    torch.manual_seed(5)
    encoder = ContrastiveEncoder.from_config(model_config, 4).eval()
    patches = torch.cat([torch.rand(2, 1, 16, 16, 16), torch.ones(2, 1, 16, 16, 16)], dim=1)
    assert torch.equal(encoder.encode(patches)[0], vae.encode(patches)[0])
    assert encoder(patches).shape == (2, 4)
    assert not any(name.startswith("backbone.network.decode") for name in encoder.state_dict())


@pytest.fixture(scope="module", params=list(MODELS))
def trained(request, sample_manifest: Path, tmp_path_factory) -> tuple[Path, list[dict], str]:  # noqa: F811
    checkpoint = tmp_path_factory.mktemp("contrastive") / "contrastive.pt"
    history = train_contrastive(_variant(MODELS[request.param]), _settings(), sample_manifest, checkpoint)
    return checkpoint, history, request.param


def test_the_loss_falls_over_a_few_epochs_on_the_sample_patches(trained):
    _, history, _ = trained
    # seen: 2.36 → 1.67 (image only), 2.23 → 1.64 (mask channel); the floor is high, each nodule is in train 3 times
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.05
    assert all(math.isfinite(entry["val_loss"]) for entry in history)


def test_the_checkpoint_round_trips_and_embeds_one_row_per_manifest_row(trained, sample_manifest):  # noqa: F811
    checkpoint, history, name = trained
    stored = read_checkpoint(checkpoint)  # weights_only=True
    best = min(history, key=lambda entry: entry["val_loss"])
    assert stored["epoch"] == best["epoch"] and stored["history"] == history[: best["epoch"]]
    assert stored["contrastive"]["temperature"] == 0.5 and stored["input"]["input_size"] == 16
    assert stored["config"]["model"]["mask_channel"] == MODELS[name]["mask_channel"]
    torch.manual_seed(3)  # the variant's train.seed: the weights training started from
    initial = ContrastiveEncoder.from_config(_variant(MODELS[name]).model, 4).state_dict()
    unchanged = {key for key, value in initial.items() if value.is_floating_point() and torch.equal(value, stored["model"][key])}
    assert {key for key in unchanged if "running" not in key} == {key for key in initial if "logvar" in key} | {
        "backbone.sigma.log_sigma2"}  # no gradient reaches the log-variance heads; the decoder σ is never calibrated
    features = embed_contrastive(checkpoint, sample_manifest, batch_size=4, device="cpu", average_orientations=True)
    manifest = pd.read_parquet(sample_manifest)
    assert list(features["nodule_id"]) == list(manifest["nodule_id"])
    assert list(features.columns[1:]) == [f"simclr{i:03d}" for i in range(8)]
    values = features.iloc[:, 1:].to_numpy()
    assert (values == values).all() and values.std(axis=0).max() > 0


def test_two_views_differ_but_the_features_do_not_depend_on_the_orientation():
    torch.manual_seed(0)
    encoder = ContrastiveEncoder.from_config(_variant(TINY_MODEL).model, 4)
    patches = torch.rand(3, 1, 16, 16, 16)
    view_a, view_b = two_views(patches, torch.Generator().manual_seed(0), Augment(flips=True, rot90=True), 0.1)
    assert view_a.shape == patches.shape and not torch.allclose(view_a, view_b)
    averaged, _ = encode_batches(encoder, patches, 3, "cpu", average_over=(True, True))
    for turned in list(orientations(patches, True, True))[1:16:5]:
        again, _ = encode_batches(encoder, turned, 3, "cpu", average_over=(True, True))
        assert torch.allclose(torch.from_numpy(again), torch.from_numpy(averaged), atol=1e-5)
    single, _ = encode_batches(encoder, list(orientations(patches, True, True))[5], 3, "cpu")
    assert not torch.allclose(torch.from_numpy(single), torch.from_numpy(averaged), atol=1e-5)


def test_the_same_seed_trains_the_same_weights(sample_manifest, tmp_path):  # noqa: F811
    runs = [train_contrastive(_variant(TINY_MODEL, seed=seed), _settings(epochs=2), sample_manifest,
                              tmp_path / f"{name}.pt") for seed, name in ((3, "a"), (3, "b"), (4, "c"))]
    weights = [read_checkpoint(tmp_path / f"{name}.pt")["model"] for name in "abc"]
    assert [e["train_loss"] for e in runs[0]] == [e["train_loss"] for e in runs[1]]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert not all(torch.equal(weights[0][key], weights[2][key]) for key in weights[0])


def test_the_stage_script_writes_the_checkpoint_and_features(sample_manifest, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.syspath_prepend(str(REPO / "pipelines"))  # as Snakemake and python pipelines/x.py do
    variant = tmp_path / "tiny.yaml"
    variant.write_text(yaml.safe_dump(_variant(TINY_MODEL).to_dict()))
    config = tmp_path / "workflow.yaml"
    config.write_text(yaml.safe_dump({"benchmark": {"contrastive": {"epochs": 2, "batch_size": 4}}}))
    spec = importlib.util.spec_from_file_location("benchmark_contrastive", REPO / "pipelines" / "benchmark_contrastive.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    assert script.main(["--variant", str(variant), "--manifest", str(sample_manifest), "--config", str(config),
                        "--checkpoint", str(out / "contrastive.pt"), "--features", str(out / "features.parquet")]) == 0
    features = pd.read_parquet(out / "features.parquet")
    assert len(features) == len(pd.read_parquet(sample_manifest)) and "simclr007" in features.columns
    assert read_checkpoint(out / "contrastive.pt")["contrastive"]["batch_size"] == 4
    sidecar = json.loads((out / "features.json").read_text())
    assert sidecar == {"title": "contrastive (SimCLR, same backbone)", "kind": "model", "skip": []}
