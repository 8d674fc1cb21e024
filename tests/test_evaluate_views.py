"""The report's answers: nodule-mask errors and outlines, nearest neighbours, attribute vectors, curve health."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lidcvae.evaluate.latent_views import ATTRIBUTES, attribute_vector, nearest_neighbours, traversal_codes
from lidcvae.evaluate.nodule_views import OUTLINE_RGB, masked_squared_error, outline, outlined_montage
from lidcvae.evaluate.training_curves import healthy, reconstruction_log_likelihood, training_checks, training_health


def test_masked_error_separates_the_nodule_from_its_surroundings():
    inputs = np.zeros((2, 1, 4, 4, 4))
    masks = np.zeros_like(inputs, bool)
    masks[:, :, 1:3, 1:3, 1:3] = True  # 8 of 64 voxels
    reconstructions = inputs.copy()
    reconstructions[0][masks[0]] = 0.5          # sample 0 loses the nodule only
    reconstructions[1][~masks[1]] = 0.1         # sample 1 gets the background slightly wrong
    inside, outside = masked_squared_error(inputs, reconstructions, masks)
    np.testing.assert_allclose(inside, [0.25, 0.0])
    np.testing.assert_allclose(outside, [0.0, 0.01])
    inside, _ = masked_squared_error(inputs, reconstructions, np.zeros_like(masks))
    assert np.isnan(inside).all()


def test_outline_is_the_masks_boundary_ring_and_is_drawn_in_red_on_both_rows():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    ring = outline(mask)
    assert ring.sum() == 16 and not ring[2:5, 2:5].any() and ring[1, 1:6].all()
    volume_mask = np.zeros((1, 1, 8, 8, 8), bool)
    volume_mask[..., 2:6, 2:6, 2:6] = True
    grey = np.full((1, 1, 8, 8, 8), 0.5, np.float32)
    montage = outlined_montage(grey, grey, volume_mask, zoom=1)
    red = np.all(montage == np.array(OUTLINE_RGB, np.float32), axis=-1)
    # 3 views × 2 rows, each a 4×4 square whose ring has 12 pixels
    assert red.sum() == 6 * 12 and montage.shape == (2 * 8 + 2, 3 * 8 + 2 * 2, 3)


def test_nearest_neighbours_exclude_the_query_and_come_nearest_first():
    codes = np.array([[0.0, 0], [1, 0], [0, 3], [10, 10], [0.5, 0]])
    order, distances = nearest_neighbours(codes, np.array([0, 3]), k=2)
    assert order.tolist() == [[4, 1], [2, 1]]
    np.testing.assert_allclose(distances[0], [0.5, 1.0])


def test_attribute_vector_is_the_difference_of_group_means_and_traversal_reaches_the_other_group():
    codes = np.array([[1.0, 0], [3, 0], [0, 2], [0, 4]])
    table = pd.DataFrame({"label": pd.array([1, 1, 0, 0], dtype="Int64"), "spiculation": [5, 3, 1, 2],
                          "consensus_diameter_mm": [20.0, 8, 4, 9]})
    malignancy, spiculation, size = ATTRIBUTES[:3]
    has, has_not = malignancy.groups(table)
    vector = attribute_vector(codes, has, has_not)
    np.testing.assert_allclose(vector, [2.0, -3.0])
    path = traversal_codes(codes[has_not].mean(axis=0), vector, np.array([0.0, 1.0]))
    np.testing.assert_allclose(path, [[0, 3], [2, 0]])  # t = 1 lands on the malignant mean
    has, has_not = spiculation.groups(table)  # ≥ 3 against 1; the rating 2 is on neither side
    assert has.tolist() == [True, True, False, False] and has_not.tolist() == [False, False, True, False]
    has, has_not = size.groups(table)  # median 8.5 mm
    assert has.tolist() == [True, False, False, True] and has_not.tolist() == [False, True, True, False]
    assert attribute_vector(codes, has & False, has_not) is None
    no_diameters = pd.DataFrame({"consensus_diameter_mm": [np.nan, np.nan]})
    assert not size.groups(no_diameters)[0].any() and not size.groups(no_diameters)[1].any()
    digits = pd.DataFrame({"label": pd.array([0, 3, 7, 1], dtype="Int64")})
    assert not malignancy.applies(digits) and not malignancy.groups(digits)[0].any()  # MNIST's label is no malignancy


def _history(reconstruction_loss, kl, val_loss=None, val_kl=None):
    epochs = len(reconstruction_loss)
    return pd.DataFrame({"epoch": np.arange(1, epochs + 1), "train_reconstruction": reconstruction_loss, "train_kl": kl,
                         "val_reconstruction": reconstruction_loss if val_loss is None else val_loss,
                         "val_kl": kl if val_kl is None else val_kl})


def test_a_healthy_run_gets_no_sentence_and_each_departure_gets_one():
    fast_then_slow = 1000 * np.exp(-np.arange(12) / 2.0)
    rise_then_fall = np.r_[np.linspace(1, 10, 4), np.linspace(9, 6, 8)]
    healthy_run = _history(fast_then_slow, rise_then_fall)
    assert reconstruction_log_likelihood(healthy_run, "train")[0] == -1000  # loss column negated: log p(x|z)
    assert training_health(healthy_run) == [] and healthy(training_checks(healthy_run))
    slow_then_fast = 1000 - np.arange(12) ** 2
    assert "has not levelled off" in " ".join(training_health(_history(slow_then_fast, rise_then_fall)))
    assert "not learning" in " ".join(training_health(_history(np.full(12, 5.0), rise_then_fall)))
    assert "still rising" in " ".join(training_health(_history(fast_then_slow, np.linspace(1, 10, 12))))
    assert "collapsed" in " ".join(training_health(_history(fast_then_slow, np.r_[5.0, 3, np.full(10, 0.001)])))
    worse_val = np.r_[fast_then_slow[:8], fast_then_slow[8] + np.arange(4) * 10.0]
    assert "overfitting" in " ".join(training_health(_history(fast_then_slow, rise_then_fall, worse_val)))
    assert "too few" in training_health(_history([3.0, 2], [1.0, 2]))[0]
    assert not healthy(training_checks(_history([3.0, 2], [1.0, 2])))


def test_validation_that_worsens_after_its_best_epoch_a_kl_spike_and_a_gap_are_each_named():
    fast_then_slow = 1000 * np.exp(-np.arange(12) / 2.0)
    rise_then_fall = np.r_[np.linspace(1, 10, 4), np.linspace(9, 6, 8)]
    # validation loss lowest at epoch 5 (row 4), then back up by 200 nats: far over 5 % of |best|
    worsened = np.r_[fast_then_slow[:5], fast_then_slow[4] + np.linspace(20, 200, 7)]
    checks = {c.name: c for c in training_checks(_history(fast_then_slow, rise_then_fall, worsened))}
    assert checks["validation after the best epoch"].passed is False
    assert "worsened after epoch 5" in checks["validation after the best epoch"].detail
    spiked = rise_then_fall.copy()
    spiked[7] = 40.0  # 5× its neighbours' median
    spike = {c.name: c for c in training_checks(_history(fast_then_slow, spiked))}["no KL spike"]
    assert spike.passed is False and "epoch 8" in spike.detail
    gap = {c.name: c for c in training_checks(_history(fast_then_slow, rise_then_fall, 3 * fast_then_slow + 50))}
    assert gap["train/validation gap"].passed is False
    no_validation = _history(fast_then_slow, rise_then_fall).drop(columns=["val_reconstruction", "val_kl"])
    assert not healthy(training_checks(no_validation))  # not computable is not healthy


@pytest.mark.parametrize("mode, expected", [({"mode": "learned"}, "σ calibrated"), ({"mode": "calibrated"}, "σ calibrated"),
                                            ({"mode": "fixed", "log_sigma2": 0.0}, "σ fixed: σ² = exp(0) = 1")])
def test_headline_names_the_sigma_mode_for_what_it_does(mode, expected):
    from lidcvae.evaluate.headline import RunInfo, model_description
    from lidcvae.models.config import ModelConfig
    from lidcvae.train.config import TrainConfig

    info = RunInfo(model=ModelConfig.from_mapping({"sigma": mode}), train=TrainConfig.from_mapping({"beta": 2.0, "kl_warmup_steps": 10}))
    _, loss = model_description(info)
    assert expected in loss and "β = 2" in loss and "10-step linear KL warm-up" in loss


def test_headline_says_what_the_default_model_sees_and_how_its_error_is_weighted():
    from lidcvae.evaluate.headline import RunInfo, model_description
    from lidcvae.models.config import ModelConfig
    from lidcvae.train.config import TrainConfig

    architecture, loss = model_description(RunInfo(model=ModelConfig.from_mapping({}), train=TrainConfig.from_mapping({})))
    assert "input 32³ voxels at 1 mm: the windowed HU image and the consensus mask (0/1) as two channels" in architecture
    assert "the image kept within 1 voxel of the consensus mask and set to -860 HU elsewhere" in architecture
    assert "weighted ×10 on the consensus mask dilated by 3 voxels" in loss
    assert ("negative ELBO = −log p(x|z) − 1000·log p(h|z), h the nodule's 16-bin density histogram over the "
            "consensus mask and its edge band, decoded linearly from z") in loss
    assert ("; encoder levels [0, 1] and a soft histogram of the image (16 bins) also averaged over the consensus mask "
            "and its edge band into μ and log σ²") in architecture
    mask_only = ModelConfig.from_mapping({"mask_pooling": {"edge": False, "histogram_bins": 0}})
    assert "; encoder levels [0, 1] also averaged over the consensus mask into μ" in model_description(RunInfo(model=mask_only))[0]
    histogram_only = ModelConfig.from_mapping({"mask_pooling": {"levels": [], "histogram_bins": 8}})
    assert "; a soft histogram of the image (8 bins) also averaged over" in model_description(RunInfo(model=histogram_only))[0]
    seed_recipe = ModelConfig.from_mapping({"mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "input_size": 64, "reconstruction_weight": {"kind": "uniform"},
                                            "context": {"kind": "full"}})
    architecture, loss = model_description(RunInfo(model=seed_recipe))
    assert "input 64³ voxels at 1 mm: the windowed HU image;" in architecture and "weighted uniformly" in loss
    assert "p(h|z)" not in model_description(RunInfo(model=seed_recipe, train=TrainConfig.from_mapping({})))[1]
    assert "averaged over the consensus mask" not in architecture
    assert "orientation" not in architecture  # no embed section given: nothing said about the embeddings


def test_headline_says_how_the_embeddings_were_made():
    from lidcvae.embed import EmbedConfig
    from lidcvae.evaluate.headline import RunInfo, model_description
    from lidcvae.models.config import ModelConfig
    from lidcvae.train.config import TrainConfig

    def architecture(train: dict | None, embed: dict) -> str:
        return model_description(RunInfo(model=ModelConfig.from_mapping({}), embed=EmbedConfig.from_mapping(embed),
                                          train=None if train is None else TrainConfig.from_mapping(train)))[0]

    assert architecture({}, {}).endswith("; embeddings: each nodule's posterior mean averaged over the 16 orientations "
                                         "its training augmentation drew.")
    assert "over the 8 orientations" in architecture({"augment": {"rot90": False}}, {})
    assert "one orientation (training drew no flips or turns)" in architecture({"augment": {"flips": False, "rot90": False}}, {})
    assert "over the orientations its training augmentation drew" in architecture(None, {})
    assert architecture({}, {"average_orientations": False}).endswith("; embeddings: posterior means, one orientation.")
