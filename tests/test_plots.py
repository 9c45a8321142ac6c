"""fitting.plots: figures build without pyplot (Agg canvas), carry units, and reject bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from fitting import plots
from fitting.peaks import fit_histogram


@pytest.fixture
def maps(rng):
    pos = rng.normal(0.33, 0.02, (12, 9))
    pos[0, 0] = np.nan
    classes = rng.integers(-1, 7, (12, 9))
    q = np.linspace(0.1, 0.8, 50)
    iq = rng.random((12, 9, 50))
    return pos, classes, q, iq


def test_peak_map_colour_bar_in_inverse_angstrom(maps, tmp_path):
    pos, *_ = maps
    fig = plots.peak_map(pos, step=40.0)
    assert isinstance(fig, Figure)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("Å⁻¹" in lab for lab in labels)  # colour bar
    assert fig.axes[0].get_xlabel() == "x [nm]"
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_histogram_draws_each_component(maps, rng):
    x = np.concatenate([rng.normal(0.33, 0.019, 600), rng.normal(0.295, 0.012, 400)])
    g = fit_histogram(x, 2)
    fig = plots.peak_histogram(x, g)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # two dotted components and the mixture
    assert "Å⁻¹" in fig.axes[0].get_xlabel()


def test_class_map_profiles_and_figure2(maps, tmp_path):
    pos, classes, q, iq = maps
    assert isinstance(plots.class_map(classes, step=40.0), Figure)
    assert isinstance(plots.class_profiles(q, iq, classes, n_examples=2, rng=0), Figure)
    fig = plots.figure2(q, iq, pos, classes, fit_histogram(pos, 1), step=40.0)
    assert len(fig.axes) >= 4
    fig.savefig(tmp_path / "fig2.png")


def test_bad_input(maps):
    pos, classes, q, iq = maps
    with pytest.raises(ValueError, match="position"):
        plots.peak_map(pos[0])
    with pytest.raises(ValueError, match="finite"):
        plots.peak_histogram([np.nan])
    with pytest.raises(ValueError, match="classes"):
        plots.class_map(classes[0])
    with pytest.raises(ValueError, match="mismatched"):
        plots.class_profiles(q, iq[:, :, :10], classes)
