"""Figures of the measured-data analysis (the study's Figure 2): peak-position map, histogram with its Gaussian
components, class map and representative I·Q curves per class.

Every function builds its own ``matplotlib.figure.Figure`` (no pyplot state, safe with the Agg backend and in
threads) and returns it; save with ``fig.savefig(path)``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

__all__ = ["class_map", "class_profiles", "figure2", "peak_histogram", "peak_map"]

#: Colours of fitting.classify.CLASSES (vacuum, Li, Cu, Li₂O, Type 1, Type 2, electrolyte, unassigned).
CLASS_COLORS = ("#d9d9d9", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#1f77b4", "#17becf", "#000000")
CLASS_LABELS = ("vacuum/thin", "Li metal", "Cu", "Li₂O", "SEI Type 1", "SEI Type 2", "electrolyte", "unassigned")


def _extent(shape, step):
    if step is None:
        return None, "scan x [positions]", "scan y [positions]"
    nm = float(step) / 10.0
    return (-0.5 * nm, (shape[1] - 0.5) * nm, (shape[0] - 0.5) * nm, -0.5 * nm), "x [nm]", "y [nm]"


def peak_map(position, *, step=None, vmin=None, vmax=None, cmap="viridis", ax=None, title="SRO peak position"):
    """Map of the SRO peak position with a colour bar in Å⁻¹.

    Parameters
    ----------
    position : ndarray (sy, sx)  [Å⁻¹]
        NaN pixels are shown blank.
    step : float or None  [Å]
        Scan step; axes in nm when given.
    vmin, vmax : float or None  [Å⁻¹]
    cmap : str
    ax : matplotlib Axes or None
        Draw into this axes (its figure is returned).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    pos = np.asarray(position, dtype=float)
    if pos.ndim != 2:
        raise ValueError(f"position.shape={pos.shape}: expected a 2-D map (sy, sx) [Å⁻¹]")
    fig, ax = _fig_ax(ax, (5, 4))
    ext, xl, yl = _extent(pos.shape, step)
    im = ax.imshow(np.ma.masked_invalid(pos), cmap=cmap, vmin=vmin, vmax=vmax, extent=ext, interpolation="nearest")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("peak position Q [Å⁻¹]")
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title)
    return fig


def peak_histogram(values, mixture=None, *, bins=40, range=None, ax=None, title="SRO peak positions"):
    """Histogram (density) of peak positions with the Gaussian components of a mixture as dotted lines.

    Parameters
    ----------
    values : array-like  [Å⁻¹]
        NaN values are ignored.
    mixture : fitting.peaks.GaussianMixture or None
    bins : int
    range : tuple or None  [Å⁻¹]
    ax : matplotlib Axes or None
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("values: no finite peak positions to histogram")
    fig, ax = _fig_ax(ax, (5, 3.5))
    ax.hist(v, bins=bins, range=range, density=True, color="0.7", edgecolor="0.4")
    if mixture is not None:
        lo, hi = (v.min(), v.max()) if range is None else range
        x = np.linspace(lo, hi, 400)
        for k in np.arange(mixture.n_components):
            ax.plot(
                x,
                mixture.pdf(x, component=int(k)),
                ":",
                lw=2,
                label=f"{mixture.means[k]:.3f} ± {mixture.stds[k]:.3f} Å⁻¹ ({100 * mixture.weights[k]:.0f} %)",
            )
        ax.plot(x, mixture.pdf(x), "k-", lw=1, label="mixture")
        ax.legend(fontsize=8)
    ax.set_xlabel("peak position Q [Å⁻¹]")
    ax.set_ylabel("density [Å]")
    ax.set_title(title)
    return fig


def class_map(classes, *, step=None, ax=None, title="classes"):
    """Class map with a legend of the classes of ``fitting.classify.CLASSES``.

    Parameters
    ----------
    classes : ndarray of int (sy, sx)
        Class indices; −1 (unclassified) is shown white.
    step : float or None  [Å]
    ax : matplotlib Axes or None
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    c = np.asarray(classes)
    if c.ndim != 2:
        raise ValueError(f"classes.shape={c.shape}: expected a 2-D class map")
    fig, ax = _fig_ax(ax, (5.5, 4))
    cmap = ListedColormap(("#ffffff",) + CLASS_COLORS)
    norm = BoundaryNorm(np.arange(-1.5, len(CLASS_COLORS) + 0.5), cmap.N)
    ext, xl, yl = _extent(c.shape, step)
    ax.imshow(c, cmap=cmap, norm=norm, extent=ext, interpolation="nearest")
    from matplotlib.patches import Patch

    present = sorted(set(np.unique(c).tolist()) - {-1})
    ax.legend(
        handles=[Patch(color=CLASS_COLORS[k], label=CLASS_LABELS[k]) for k in present],
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
    )
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(title)
    return fig


def class_profiles(q, iq, classes, *, n_examples=0, q_range=(0.15, 0.8), ax=None, rng=None, title="I·Q per class"):
    """Mean I·Q curve of every class (and optionally a few example pixels), offset for clarity.

    Parameters
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
    iq : ndarray (sy, sx, n_q)  [counts per pixel · Å⁻¹]
        I·Q profiles (``ScanProfiles.iq``).
    classes : ndarray of int (sy, sx)
    n_examples : int
        Example pixels per class drawn thinly.
    q_range : tuple  [Å⁻¹]
    ax : matplotlib Axes or None
    rng : numpy.random.Generator, int or None
        Choice of example pixels.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    rng = np.random.default_rng(rng)
    q = np.asarray(q, dtype=float)
    iq = np.asarray(iq, dtype=float)
    c = np.asarray(classes)
    if iq.shape[:-1] != c.shape or iq.shape[-1] != q.size:
        raise ValueError(f"iq.shape={iq.shape}, classes.shape={c.shape}, q.size={q.size}: mismatched shapes")
    sel = (q >= q_range[0]) & (q <= q_range[1])
    fig, ax = _fig_ax(ax, (5, 4))
    offset = 0.0
    for k in range(len(CLASS_COLORS)):
        m = c == k
        if not m.any():
            continue
        curves = iq[m][:, sel]
        mean = np.nanmean(curves, axis=0)
        scale = np.nanmax(np.abs(mean)) or 1.0
        if n_examples:
            for i in rng.choice(curves.shape[0], size=min(n_examples, curves.shape[0]), replace=False):
                ax.plot(q[sel], curves[i] / scale + offset, color=CLASS_COLORS[k], lw=0.5, alpha=0.4)
        ax.plot(q[sel], mean / scale + offset, color=CLASS_COLORS[k], lw=2, label=f"{CLASS_LABELS[k]} ({m.sum()})")
        offset += 1.1
    ax.set_xlabel("Q [Å⁻¹]")
    ax.set_ylabel("I·Q (normalised, offset)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def figure2(q, iq, position, classes, mixture=None, *, step=None) -> Figure:
    """Four-panel summary like the study's Figure 2: peak map, histogram, class map, I·Q per class.

    Parameters
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
    iq : ndarray (sy, sx, n_q)
    position : ndarray (sy, sx)  [Å⁻¹]
    classes : ndarray of int (sy, sx)
    mixture : fitting.peaks.GaussianMixture or None
    step : float or None  [Å]

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axs = fig.subplots(2, 2)
    peak_map(position, step=step, ax=axs[0, 0])
    if np.isfinite(np.asarray(position, dtype=float)).any():
        peak_histogram(position, mixture, ax=axs[0, 1])
    class_map(classes, step=step, ax=axs[1, 0])
    class_profiles(q, iq, classes, ax=axs[1, 1])
    return fig


def _fig_ax(ax, size):
    if ax is None:
        fig = Figure(figsize=size, layout="constrained")
        return fig, fig.add_subplot()
    return ax.figure, ax
