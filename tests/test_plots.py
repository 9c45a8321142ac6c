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
    labels = [a.get_ylabel() for ax in fig.axes for a in (ax, *ax.child_axes)]
    assert any("Å⁻¹" in lab and "0.27–0.37" in lab for lab in labels)  # colour bar states its fixed range
    im = fig.axes[0].images[0]
    assert im.get_clim() == plots.PEAK_MAP_RANGE  # fixed, not the data's range
    from matplotlib_scalebar.scalebar import ScaleBar

    assert any(isinstance(a, ScaleBar) for a in fig.axes[0].artists)  # real-space scale bar on the map
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_histogram_draws_each_component(maps, rng):
    x = np.concatenate([rng.normal(0.33, 0.019, 600), rng.normal(0.295, 0.012, 400)])
    g = fit_histogram(x, 2)
    fig = plots.peak_histogram(x, g)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # two dashed components and the mixture
    assert "Å⁻¹" in fig.axes[0].get_xlabel()
    # pixel counts: the drawn mixture integrates to the number of values (density × N × bin width)
    xs, ys = lines[-1].get_data()
    assert np.trapezoid(ys, xs) / 0.0025 == pytest.approx(x.size, rel=0.05)
    assert "pixels" in fig.axes[0].get_ylabel()


def test_components_are_labelled_by_their_class(rng):
    x = np.concatenate([rng.normal(0.34, 0.005, 300), rng.normal(0.295, 0.005, 200)])
    cls = np.r_[np.full(300, 4), np.full(200, 5)]
    g = fit_histogram(x, 2)
    labels = plots.label_components(x, cls, g)  # components sorted by mean: 0.295 first
    assert labels[0].startswith("SEI Type 2") and labels[1].startswith("SEI Type 1")


def test_class_map_profiles_and_figure2(maps, tmp_path):
    pos, classes, q, iq = maps
    assert isinstance(plots.class_map(classes, step=40.0), Figure)
    assert isinstance(plots.class_profiles(q, iq, classes, n_examples=2, rng=0), Figure)
    pats = {k: (iy, ix, rng_pat(), (31.5, 31.5)) for k, (iy, ix) in plots.representative_pixels(iq, classes).items()}
    adf = plots.virtual_adf(iq, np.ones(q.size), q)
    fig = plots.figure2(q, iq, pos, classes, fit_histogram(pos, 1), step=40.0, patterns=pats,
                        pattern_pixel_size=0.01, adf=adf)  # fmt: skip
    letters = {t.get_text() for ax in fig.axes for t in ax.texts if len(t.get_text()) == 1}
    assert {"a", "b", "c", "d", "e", "f"} <= letters
    fig.savefig(tmp_path / "fig2.png")


def rng_pat():
    return np.random.default_rng(0).poisson(3.0, (64, 64)).astype(float)


def test_representative_pixel_is_the_typical_one():
    iq = np.ones((3, 3, 10))
    iq[0, 0] *= 5.0  # same shape, other scale: still typical after normalisation
    iq[1, 1, 5] = 9.0  # an outlier shape
    classes = np.zeros((3, 3), int)
    (iy, ix) = plots.representative_pixels(iq, classes)[0]
    assert (iy, ix) != (1, 1)


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


def test_fit_figure_shows_data_model_components_and_residuals(rng):
    from fitting.hypotheses import compare

    q = np.linspace(0.2, 0.8, 121)
    a = np.exp(-0.5 * ((q - 0.33) / 0.05) ** 2) + 0.1
    b = np.exp(-0.5 * ((q - 0.5) / 0.01) ** 2)
    expo = np.full(q.size, 50.0)
    counts = rng.poisson(expo * (20 * a + 5 * b)).astype(float)
    comp = compare((q, counts, expo), {"A": {"a": (q, a)}, "A+B": {"a": (q, a), "b": (q, b)}},
                   background=None, q_scale=False, blur=False)  # fmt: skip
    fig = plots.fit_figure(comp, top=2)
    main = [ax for ax in fig.axes if ax.get_lines() and "I·Q" in ax.get_ylabel()][0]
    labels = {ln.get_label() for ln in main.get_lines()}
    assert {"data", "model"} <= labels and ({"a", "b"} <= labels)  # the best (A+B) shows both components
    # the residual panel of the true model is Pearson residuals: unit variance for Poisson data
    res_ax = [ax for ax in fig.axes if "√model" in ax.get_ylabel()][0]
    r = res_ax.get_lines()[-1].get_ydata()
    assert 0.6 < np.nanstd(r) < 1.4
    tables = [ax.tables[0] for ax in fig.axes if ax.tables]
    assert tables and "±" in tables[0].get_celld()[(1, 1)].get_text().get_text()


def test_profile_sigma_of_a_parabola():
    from fitting.cli import _profile_sigma

    x = np.array([1.8, 1.9, 2.0, 2.1, 2.2])
    f = (x - 2.0) ** 2 / (2 * 0.1**2) + 7.0  # −log L of a Gaussian with σ = 0.1
    assert _profile_sigma(x, f, 2.0) == pytest.approx(0.1, rel=1e-6)
    assert _profile_sigma(x, -f, 2.0) is None  # curved the wrong way: no interval
