"""Figures and report: exact montage sizes, centre slices, interpolation paths, a self-contained page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from lidcvae.evaluate import figures
from lidcvae.evaluate.outputs import write_figures
from lidcvae.evaluate.report import Section, figure_html, flatten_metrics, render_report
from lidcvae.intensity import HUWindow

GAP = figures.GAP


@pytest.mark.parametrize(
    "event_shape, count, columns, zoom",
    [((1, 16, 16, 16), 8, 4, 2), ((1, 16, 16, 16), 3, 4, 1), ((1, 28, 28), 5, 4, 3)],
)
def test_reconstruction_montage_has_the_expected_pixel_size(tmp_path, event_shape, count, columns, zoom):
    inputs = np.random.default_rng(0).random((count, *event_shape), dtype=np.float32)
    montage = figures.reconstruction_montage(inputs, inputs, columns=columns)
    side, views = event_shape[-1], (3 if len(event_shape) == 4 else 1)
    block_width, block_height = views * side + (views - 1) * GAP, 2 * side + GAP
    grid_columns, grid_rows = min(columns, count), -(-count // columns)
    expected = (grid_rows * block_height + (grid_rows - 1) * 3 * GAP, grid_columns * block_width + (grid_columns - 1) * 3 * GAP)
    assert montage.shape == expected
    (tmp_path / "montage.png").write_bytes(figures.grey_png(montage, zoom))
    assert imread(tmp_path / "montage.png").shape[:2] == (expected[0] * zoom, expected[1] * zoom)


def test_montage_puts_the_input_above_its_reconstruction():
    inputs, reconstructions = np.zeros((1, 1, 8, 8, 8)), np.ones((1, 1, 8, 8, 8))
    montage = figures.reconstruction_montage(inputs, reconstructions)
    assert montage[:8, :8].max() == 0.0 and montage[8 + GAP :, :8].min() == 1.0


def test_centre_views_are_axial_coronal_sagittal_of_a_non_cubic_volume():
    volume = np.zeros((1, 5, 7, 9))
    volume[0, 2, 3, 4] = 1.0  # the centre voxel shows in every view
    axial, coronal, sagittal = figures.centre_views(volume)
    assert (axial.shape, coronal.shape, sagittal.shape) == ((7, 9), (5, 9), (5, 7))
    assert axial[3, 4] == coronal[2, 4] == sagittal[2, 3] == 1.0


def test_lung_window_maps_minus_1350_to_black_and_150_to_white():
    window = HUWindow(-1000.0, 400.0)
    unit = window.to_unit(np.array([-1000.0, -600.0, 150.0, 400.0]))
    np.testing.assert_allclose(figures.to_display(unit, window), [350 / 1500, 750 / 1500, 1.0, 1.0], atol=1e-6)


def test_interpolation_paths_start_and_end_at_the_two_codes_and_slerp_keeps_the_norm():
    start, end = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    linear, spherical = figures.interpolation_codes(start, end, 5)
    np.testing.assert_allclose(linear[[0, -1]], [start, end])
    np.testing.assert_allclose(spherical[[0, -1]], [start, end], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(spherical, axis=1), 3.0)
    assert np.linalg.norm(linear[2]) < 3.0


def test_plots_are_drawn_in_memory_and_written_once(tmp_path):
    codes = np.random.default_rng(0).normal(size=(30, 4))
    drawn = [figures.Drawn("pca.png", "", figures.plot_latent_pca(codes, pd.Series(pd.array([0, 1, pd.NA] * 10, dtype="Int64")))),
             figures.Drawn("kl.png", "", figures.plot_kl_per_dimension(np.array([0.0, 0.001, 2.0, 0.5]),
                                                                       np.array([False, False, True, True]))),
             figures.Drawn("roc.png", "", figures.plot_roc_curves({"a": ([0, 0, 1], [0, 1, 1], 1.0)}))]
    assert not list(tmp_path.iterdir())  # nothing is written while drawing
    paths = write_figures(tmp_path / "figures", drawn)
    assert [p.name for p in paths] == ["pca.png", "kl.png", "roc.png"] and sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["kl.png", "pca.png", "roc.png"]
    for path, figure in zip(paths, drawn):
        assert path.read_bytes() == figure.png and imread(path).shape[0] > 100


def test_report_is_self_contained_with_headline_then_warnings_then_sections():
    metrics = {"splits": {"test": {"psnr_db": 21.5}}, "collapse": {"kl_per_dimension_nats": list(range(256))}}
    sections = [Section("first", "Question one?", figure_html(figures.grey_png(np.eye(8), 2), "an eye <b>", "eye"))]
    page = render_report("t", "<p id='head'>h</p>", sections, metrics, warnings=["!!! collapsed <b>"])
    assert page.index("id='head'") < page.index('class="warnings"') < page.index('<section id="first">')
    assert "data:image/png;base64," in page and 'src="eye.png"' not in page
    assert "splits.test.psnr_db" in page and "&lt;b&gt;" in page and "an eye &lt;b&gt;" in page
    assert ("collapse.kl_per_dimension_nats", "0, 1") not in flatten_metrics(metrics)
