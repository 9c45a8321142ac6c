"""Figures of the measured-data analysis, element by element as in the study's Figure 2: example diffraction
patterns per class (Q scale bar), a virtual annular dark-field image, the SRO peak map on a fixed colour range
(real-space scale bar), the histogram of peak positions in pixel counts with its Gaussian mixture (number of
components chosen by BIC, each labelled by the class that dominates it) and per-pixel I·Q curves per class with
the class mean; and the fit figures of the hypothesis tests (data, model, components, normalised residuals,
parameters with uncertainties) and of a refinement (profile likelihood).

Every function builds its own ``matplotlib.figure.Figure`` (no pyplot state, safe with the Agg backend and in
threads) and returns it; save with :func:`fitting.pipeline.save_figure` (300 dpi PNG, or PDF/SVG by suffix).
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.figure import Figure

__all__ = [
    "CLASS_COLORS",
    "CLASS_LABELS",
    "PEAK_MAP_RANGE",
    "class_map",
    "class_profiles",
    "diffraction_pattern",
    "figure2",
    "fit_figure",
    "label_components",
    "peak_histogram",
    "peak_map",
    "profile_likelihood_figure",
    "representative_pixels",
    "virtual_image",
    "virtual_adf",
]

#: Colours of fitting.classify.CLASSES (vacuum, Li, Cu, Li₂O, Type 1, Type 2, electrolyte, unassigned).
CLASS_COLORS = ("#d9d9d9", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#1f77b4", "#17becf", "#000000")
CLASS_LABELS = ("vacuum/thin", "Li metal", "Cu", "Li₂O", "SEI Type 1", "SEI Type 2", "electrolyte", "unassigned")
#: Fixed colour range of SRO peak maps [Å⁻¹]: the study's electrolyte (0.285), Type 2 (0.295) and Type 1
#: (0.325–0.345) all inside, so maps of different scans can be compared by colour.
PEAK_MAP_RANGE = (0.27, 0.37)
#: Classes that carry an SRO peak (fitting.pipeline.sro_positions).
_SRO_CLASSES = (4, 5, 6)


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _fig_ax(ax, size):
    if ax is None:
        fig = Figure(figsize=size, layout="constrained")
        return fig, fig.add_subplot()
    return ax.figure, ax


def _extent(shape, step):
    if step is None:
        return None, "scan x [positions]", "scan y [positions]"
    nm = float(step) / 10.0
    return (-0.5 * nm, (shape[1] - 0.5) * nm, (shape[0] - 0.5) * nm, -0.5 * nm), "x [nm]", "y [nm]"


def _nice_length(total: float) -> float:
    """A round scale-bar length, about a fifth of ``total``."""
    target = total / 5.0
    for v in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if v >= target:
            return float(v)
    return float(round(target, -3))


def _real_scalebar(ax, shape, step):
    """A scale bar in nm on a map drawn in nm (``_extent``), just below the map's lower right corner so that it
    hides no pixel and no marker; axes ticks off."""
    from matplotlib_scalebar.scalebar import ScaleBar

    width_nm = shape[1] * float(step) / 10.0
    length = _nice_length(width_nm)
    ax.add_artist(
        ScaleBar(1.0, units="nm", fixed_value=length, fixed_units="nm", location="upper right", frameon=False,
                 bbox_to_anchor=(1.0, 0.0), bbox_transform=ax.transAxes, font_properties={"size": 7},
                 scale_formatter=lambda v, u: f"{v:g} nm", label_loc="left", pad=0.1, border_pad=0.1, sep=2)
    )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _colorbar(fig, ax, im, *, extend="neither", labelled=False):
    """A colour bar as long as the drawn image: beside it, or below a flat map (height < 0.4 × width);
    ``labelled``: the map has x tick labels and an axis label below it (no scale bar)."""
    from matplotlib.ticker import MaxNLocator

    ny, nx = im.get_array().shape[:2]
    flat = ny < 0.4 * nx
    if flat:
        # the aspect-equal box is nx:ny, so a thickness of 1/25 of the width is nx/(25 ny) box heights; leave room
        # for the x tick labels and axis label when the map has axes instead of a scale bar
        # without axes labels the map has a scale bar hanging below it (_real_scalebar): 16 pt further down
        from matplotlib.transforms import offset_copy

        r = nx / max(ny, 1)
        h, gap = r / 25, (r / 6 if labelled else r / 40)
        down = offset_copy(ax.transAxes, fig=fig, y=0.0 if labelled else -16.0, units="points")
        cax = ax.inset_axes((0.0, -(gap + h), 1.0, h), transform=down)
        cb = fig.colorbar(im, cax=cax, extend=extend, orientation="horizontal")
    else:
        cax = ax.inset_axes((1.03, 0.0, 0.045, 1.0))
        cb = fig.colorbar(im, cax=cax, extend=extend)
    if not isinstance(im.norm, LogNorm):
        cb.locator = MaxNLocator(5)
        cb.update_ticks()
    else:  # four round values spread evenly in log: decade ticks alone leave a short range unlabelled
        from matplotlib.ticker import NullLocator

        lo, hi = im.norm.vmin, im.norm.vmax
        ticks = [t for t in (float(f"{v:.2g}") for v in np.geomspace(lo, hi, 4)) if lo <= t <= hi]
        axis = cb.ax.xaxis if flat else cb.ax.yaxis
        axis.set_minor_locator(NullLocator())
        cb.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
    cb.ax.tick_params(labelsize=7)
    return cb


def _letter(ax, letter):
    ax.text(-0.02, 1.02, letter, transform=ax.transAxes, fontsize=11, fontweight="bold", ha="right", va="bottom")


def representative_pixels(iq, classes, *, q=None, q_range=(0.15, 0.85)) -> dict[int, tuple[int, int]]:
    """The pixel of every class whose normalised I·Q curve is closest to its class mean.

    Parameters
    ----------
    iq : ndarray (sy, sx, n_q)  [counts per pixel · Å⁻¹]
    classes : ndarray of int (sy, sx)
    q : ndarray (n_q,) or None  [Å⁻¹]
        With ``q_range``, the bins compared (all bins when None).
    q_range : (float, float)  [Å⁻¹]

    Returns
    -------
    dict[int, (iy, ix)]
        Class index → scan position of its most typical pattern.
    """
    iq = np.asarray(iq, dtype=float)
    c = np.asarray(classes)
    sel = np.ones(iq.shape[-1], bool) if q is None else (np.asarray(q) >= q_range[0]) & (np.asarray(q) <= q_range[1])
    out = {}
    for k in np.unique(c):
        if k < 0:
            continue
        idx = np.argwhere(c == k)
        curves = iq[c == k][:, sel]
        norm = np.nanmax(np.abs(curves), axis=1, keepdims=True)
        norm[~np.isfinite(norm) | (norm == 0)] = 1.0
        curves = curves / norm
        mean = np.nanmean(curves, axis=0)
        d = np.nansum((curves - mean) ** 2, axis=1)
        iy, ix = idx[int(np.argmin(d))]
        out[int(k)] = (int(iy), int(ix))
    return out


def virtual_adf(intensity, count, q, *, q_inner: float = 0.15) -> np.ndarray:
    """Virtual annular dark-field image from radial profiles: counts summed over the bins at Q ≥ ``q_inner``.

    Parameters
    ----------
    intensity : ndarray (sy, sx, n_q)  [counts per pixel]
        Mean pixel intensity per bin (``ScanProfiles.intensity``).
    count : ndarray (sy, sx, n_q) or (n_q,)  [pixels]
        Pixels per bin.
    q : ndarray (n_q,)  [Å⁻¹]
    q_inner : float  [Å⁻¹]
        Inner radius of the virtual annulus (outside the direct disc: 2 mrad at 300 keV is 0.10 Å⁻¹).

    Returns
    -------
    ndarray (sy, sx)  [counts]
    """
    inten = np.asarray(intensity, dtype=float)
    sel = np.asarray(q) >= q_inner
    return np.nansum((inten * np.asarray(count, dtype=float))[..., sel], axis=-1)


# ----------------------------------------------------------------------------------------------------------
# panels
# ----------------------------------------------------------------------------------------------------------
def diffraction_pattern(
    pattern, pixel_size: float, *, center=None, q_max=None, q_bar: float = 0.5, ax=None, title=None, color=None
):
    """One diffraction pattern on a log intensity scale with a Q scale bar.

    Parameters
    ----------
    pattern : ndarray (det_y, det_x)  [counts]
    pixel_size : float  [Å⁻¹/px]
    center : (float, float) or None  [px]
        Direct-beam position (default the detector centre); the pattern is drawn in Q about it.
    q_max : float or None  [Å⁻¹]
        Half width of the shown window (default: the whole detector).
    q_bar : float  [Å⁻¹]
        Length of the scale bar.
    ax : matplotlib Axes or None
    title : str or None
    color : colour or None
        Frame colour (the class colour in :func:`figure2`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib_scalebar.scalebar import ScaleBar

    p = np.asarray(pattern, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"pattern.shape={p.shape}: expected one 2-D pattern (det_y, det_x) [counts]")
    if not pixel_size > 0:
        raise ValueError(f"pixel_size={pixel_size!r}: must be a positive reciprocal pixel size [Å⁻¹/px]")
    fig, ax = _fig_ax(ax, (3, 3))
    cy, cx = ((p.shape[0] - 1) / 2, (p.shape[1] - 1) / 2) if center is None else center
    ext = (-(cx + 0.5) * pixel_size, (p.shape[1] - cx - 0.5) * pixel_size,
           (p.shape[0] - cy - 0.5) * pixel_size, -(cy + 0.5) * pixel_size)  # fmt: skip
    pos = p[p > 0]
    vmax = float(np.percentile(pos, 99.9)) if pos.size else 1.0
    vmin = max(0.5, float(np.percentile(pos, 5))) if pos.size else 0.5
    ax.imshow(np.where(p > 0, p, vmin), cmap="magma", norm=LogNorm(vmin=vmin, vmax=max(vmax, 2 * vmin)), extent=ext,
              interpolation="nearest")  # fmt: skip
    if q_max is not None:
        ax.set_xlim(-q_max, q_max)
        ax.set_ylim(q_max, -q_max)
    # the scale bar works in nm⁻¹ (matplotlib-scalebar has no Å⁻¹): 1 Å⁻¹ = 10 nm⁻¹, the label says Å⁻¹
    ax.add_artist(
        ScaleBar(10.0, units="1/nm", dimension="si-length-reciprocal", fixed_value=10 * q_bar, fixed_units="1/nm",
                 location="lower right", color="white", box_alpha=0.0, font_properties={"size": 7},
                 scale_formatter=lambda v, u: f"{v / 10:g} Å⁻¹", pad=0.2, border_pad=0.2)
    )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    if color is not None:
        for s in ax.spines.values():
            s.set_edgecolor(color)
            s.set_linewidth(2.5)
    if title:
        ax.set_title(title, fontsize=8, pad=2)
    return fig


def virtual_image(
    image, *, step=None, ax=None, title="virtual ADF", label="counts", cmap="gray", markers=None, vrange=None
):
    """A scalar map (e.g. :func:`virtual_adf`) with a real-space scale bar in nm.

    Parameters
    ----------
    image : ndarray (sy, sx)
    step : float or None  [Å]
        Scan step; a scale bar in nm when given.
    ax : matplotlib Axes or None
    title, label : str
        Title and colour-bar label (with its unit).
    cmap : str
    markers : dict[int, (iy, ix)] or None
        Positions marked with the class colour (the example patterns of :func:`figure2`).
    vrange : (float, float) or None
        Colour range of the logarithmic colour scale (default: the 1st–99.5th percentile of the positive values,
        clipped values marked by the colour bar's arrows).

    Returns
    -------
    matplotlib.figure.Figure
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"image.shape={img.shape}: expected a 2-D map (sy, sx)")
    fig, ax = _fig_ax(ax, (5, 3.5))
    ext, xl, yl = _extent(img.shape, step)
    fin = img[np.isfinite(img) & (img > 0)]
    lo, hi = (np.percentile(fin, [1, 99.5]) if fin.size else (1.0, 10.0)) if vrange is None else vrange
    # logarithmic: one Cu grain scatters 10–100× more than Li metal and would leave the SEI black on a linear scale
    norm = LogNorm(vmin=max(lo, 1e-12), vmax=max(hi, 2 * max(lo, 1e-12)))
    im = ax.imshow(np.where(img > 0, img, np.nan), cmap=cmap, extent=ext, interpolation="nearest", norm=norm)
    cb = _colorbar(fig, ax, im, extend="both" if vrange is None else "neither", labelled=step is None)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=7)
    _markers(ax, markers, step)
    if step is not None:
        _real_scalebar(ax, img.shape, step)
    else:
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    ax.set_title(title, fontsize=9)
    return fig


def _markers(ax, markers, step):
    if not markers:
        return
    f = 1.0 if step is None else float(step) / 10.0
    for k, (iy, ix) in markers.items():
        ax.plot(ix * f, iy * f, "o", ms=6, mfc="none", mec=CLASS_COLORS[k], mew=1.8, clip_on=False)  # whole at edges


def peak_map(
    position, *, step=None, vmin=None, vmax=None, cmap="viridis", ax=None, title="SRO peak position", markers=None
):
    """Map of the SRO peak position on a fixed colour range (:data:`PEAK_MAP_RANGE` unless given) [Å⁻¹].

    Parameters
    ----------
    position : ndarray (sy, sx)  [Å⁻¹]
        NaN pixels (no SRO peak: crystals, vacuum, failed fits) are shown grey.
    step : float or None  [Å]
        Scan step; a real-space scale bar in nm when given.
    vmin, vmax : float or None  [Å⁻¹]
        Colour range (default :data:`PEAK_MAP_RANGE`, stated on the colour bar; values outside are clipped to its
        end colours, marked by the colour bar's arrows).
    cmap : str
    ax : matplotlib Axes or None
        Draw into this axes (its figure is returned).
    title : str
    markers : dict[int, (iy, ix)] or None

    Returns
    -------
    matplotlib.figure.Figure
    """
    pos = np.asarray(position, dtype=float)
    if pos.ndim != 2:
        raise ValueError(f"position.shape={pos.shape}: expected a 2-D map (sy, sx) [Å⁻¹]")
    vmin = PEAK_MAP_RANGE[0] if vmin is None else vmin
    vmax = PEAK_MAP_RANGE[1] if vmax is None else vmax
    fig, ax = _fig_ax(ax, (5, 3.5))
    ext, xl, yl = _extent(pos.shape, step)
    ax.set_facecolor("0.85")
    im = ax.imshow(np.ma.masked_invalid(pos), cmap=cmap, vmin=vmin, vmax=vmax, extent=ext, interpolation="nearest")
    cb = _colorbar(fig, ax, im, extend="both", labelled=step is None)
    cb.set_label(f"peak Q [Å⁻¹] (fixed {vmin:g}–{vmax:g})", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    _markers(ax, markers, step)
    if step is not None:
        _real_scalebar(ax, pos.shape, step)
    ax.set_xlabel(xl if step is None else "")
    ax.set_ylabel(yl if step is None else "")
    ax.set_title(title, fontsize=9)
    return fig


def label_components(values, classes, mixture) -> list[str]:
    """The class that dominates each mixture component (by majority of the pixels it explains best).

    Parameters
    ----------
    values : ndarray (sy, sx)  [Å⁻¹]
        Peak positions (NaN where none).
    classes : ndarray of int (sy, sx)
    mixture : fitting.peaks.GaussianMixture

    Returns
    -------
    list of str
        One label per component, e.g. "SEI Type 1 (92 %)": the class of most of its pixels and their share.
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(classes)
    ok = np.isfinite(v)
    x, cls = v[ok], c[ok]
    resp = np.stack([mixture.pdf(x, component=k) for k in range(mixture.n_components)], axis=-1)
    best = np.argmax(resp, axis=-1)
    out = []
    for k in range(mixture.n_components):
        mine = cls[best == k]
        if mine.size == 0:
            out.append("no pixel")
            continue
        ks, n = np.unique(mine, return_counts=True)
        j = int(np.argmax(n))
        name = CLASS_LABELS[ks[j]] if 0 <= ks[j] < len(CLASS_LABELS) else "unclassified"
        out.append(f"{name} ({100 * n[j] / mine.size:.0f} %)")
    return out


def peak_histogram(
    values, mixture=None, *, classes=None, bins=None, range=None, ax=None, title="SRO peak positions", legend=True
):
    """Histogram of peak positions in pixel counts, stacked by class, with the mixture's components.

    Parameters
    ----------
    values : array-like  [Å⁻¹]
        Peak positions; NaN values are ignored. Give the 2-D map together with ``classes`` to stack by class.
    mixture : fitting.peaks.GaussianMixture or None
        Drawn as counts per bin (density × pixels × bin width); its number of components was chosen by BIC
        (:func:`fitting.peaks.fit_histogram`), stated in the legend title with the BIC of each k tried.
    classes : ndarray of int or None
        Class per value (same shape as ``values``): bars stacked by class, components labelled by class.
    bins : int or None
        Default: 0.0025 Å⁻¹ bins over the data (at least 15).
    range : tuple or None  [Å⁻¹]
    ax : matplotlib Axes or None
    title : str
    legend : bool

    Returns
    -------
    matplotlib.figure.Figure
    """
    v_all = np.asarray(values, dtype=float)
    ok = np.isfinite(v_all)
    v = v_all[ok]
    if v.size == 0:
        raise ValueError("values: no finite peak positions to histogram")
    if classes is not None and np.shape(classes) != v_all.shape:
        raise ValueError(f"classes.shape={np.shape(classes)} does not match values.shape={v_all.shape}")
    fig, ax = _fig_ax(ax, (5, 3.5))
    lo, hi = (float(v.min()), float(v.max())) if range is None else range
    if hi <= lo:
        lo, hi = lo - 0.005, hi + 0.005
    if bins is None:
        bins = max(15, int(np.ceil((hi - lo) / 0.0025)))
    edges = np.linspace(lo, hi, bins + 1)
    width = edges[1] - edges[0]
    if classes is None:
        ax.hist(v, bins=edges, color="0.7", edgecolor="0.4", lw=0.5)
    else:
        c = np.asarray(classes)[ok]
        present = [k for k in np.unique(c) if 0 <= k < len(CLASS_COLORS)]
        ax.hist([v[c == k] for k in present], bins=edges, stacked=True, color=[CLASS_COLORS[k] for k in present],
                label=[f"{CLASS_LABELS[k]} ({int(np.sum(c == k))} px)" for k in present], edgecolor="white",
                lw=0.3)  # fmt: skip
    if mixture is not None:
        x = np.linspace(lo, hi, 400)
        scale = v.size * width
        names = label_components(v_all, classes, mixture) if classes is not None else [""] * mixture.n_components
        for k in np.arange(mixture.n_components):
            ax.plot(x, scale * mixture.pdf(x, component=int(k)), "--", lw=1.3, color="0.15" if k % 2 else "0.45",
                    label=f"{mixture.means[k]:.3f} ± {mixture.stds[k]:.3f} Å⁻¹ {names[k]}")  # fmt: skip
        ax.plot(x, scale * mixture.pdf(x), "k-", lw=1, label="mixture")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("SRO peak position Q [Å⁻¹]")
    ax.set_ylabel(f"pixels per bin ({width:.4f} Å⁻¹)")
    ax.set_title(title, fontsize=9)
    if legend and (mixture is not None or classes is not None):
        t = None
        if mixture is not None:
            tried = ", ".join(f"k={k}: {b:.0f}" for k, b in sorted(mixture.bic.items()))
            t = f"k = {mixture.n_components} component{'s' if mixture.n_components > 1 else ''}: lowest BIC\n({tried})"
        ax.legend(fontsize=6, title=t, title_fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, frameon=False)  # fmt: skip
    return fig


def class_map(classes, *, step=None, ax=None, title="classes"):
    """Class map with a legend of the classes of ``fitting.classify.CLASSES``.

    Parameters
    ----------
    classes : ndarray of int (sy, sx)
        Class indices; −1 (unclassified) is shown white.
    step : float or None  [Å]
        Scan step; a real-space scale bar in nm when given.
    ax : matplotlib Axes or None
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    c = np.asarray(classes)
    if c.ndim != 2:
        raise ValueError(f"classes.shape={c.shape}: expected a 2-D class map")
    fig, ax = _fig_ax(ax, (5.5, 3.5))
    cmap = ListedColormap(("#ffffff",) + CLASS_COLORS)
    norm = BoundaryNorm(np.arange(-1.5, len(CLASS_COLORS) + 0.5), cmap.N)
    ext, xl, yl = _extent(c.shape, step)
    ax.imshow(c, cmap=cmap, norm=norm, extent=ext, interpolation="nearest")
    from matplotlib.patches import Patch

    present = sorted(set(np.unique(c).tolist()) - {-1})
    ax.legend(
        handles=[Patch(color=CLASS_COLORS[k], label=f"{CLASS_LABELS[k]} ({int(np.sum(c == k))})") for k in present],
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, borderaxespad=0,
        title="class (pixels)", title_fontsize=7,
    )  # fmt: skip
    if step is not None:
        _real_scalebar(ax, c.shape, step)
    else:
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    ax.set_title(title, fontsize=9)
    return fig


def class_profiles(
    q, iq, classes, *, n_examples=3, q_range=(0.15, 0.85), ax=None, rng=None, title="I·Q per class", legend=True
):
    """Per-pixel I·Q curves of a few pixels of every class (thin) and the class mean (thick), offset.

    Parameters
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
    iq : ndarray (sy, sx, n_q)  [counts per pixel · Å⁻¹]
        I·Q profiles (``ScanProfiles.iq``).
    classes : ndarray of int (sy, sx)
    n_examples : int
        Example pixels per class (drawn at random with ``rng``), each normalised like the class mean.
    q_range : tuple  [Å⁻¹]
    ax : matplotlib Axes or None
    rng : numpy.random.Generator, int or None
        Choice of example pixels.
    title : str
    legend : bool
        Legend outside the axes, on the right.

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
            for j, i in enumerate(rng.choice(curves.shape[0], size=min(n_examples, curves.shape[0]), replace=False)):
                ax.plot(q[sel], curves[i] / scale + offset, color=CLASS_COLORS[k], lw=0.6, alpha=0.45,
                        label="single pixels" if (j == 0 and offset == 0) else None)  # fmt: skip
        ax.plot(
            q[sel], mean / scale + offset, color=CLASS_COLORS[k], lw=2, label=f"{CLASS_LABELS[k]} mean ({m.sum()} px)"
        )
        offset += 1.2
    ax.set_xlim(q[sel][0], q[sel][-1])
    ax.set_xlabel("Q = 1/d [Å⁻¹]")
    ax.set_ylabel("I·Q (normalised, offset)")
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    return fig


# ----------------------------------------------------------------------------------------------------------
# the study's Figure 2
# ----------------------------------------------------------------------------------------------------------
def figure2(
    q, iq, position, classes, mixture=None, *, step=None, patterns=None, pattern_pixel_size=None, adf=None,
    adf_q_inner: float = 0.15, q_marks=(0.33, 0.43, 0.5, 0.6, 0.7), rng=0,
) -> Figure:  # fmt: skip
    """The study's Figure 2 from one scan, with panel letters.

    (a) an example diffraction pattern per class (the pixel closest to its class mean; 0.5 Å⁻¹ scale bar),
    (b) virtual ADF image, (c) class map, (d) SRO peak map on :data:`PEAK_MAP_RANGE`, (e) histogram of the
    peak positions in pixels with the BIC-chosen Gaussian mixture, components labelled by class, (f) per-pixel
    I·Q curves per class with the class mean. Example pixels are circled on (b)–(d).

    Parameters
    ----------
    q : ndarray (n_q,)  [Å⁻¹]
    iq : ndarray (sy, sx, n_q)  [counts per pixel · Å⁻¹]
    position : ndarray (sy, sx)  [Å⁻¹]
        SRO peak map (NaN where none).
    classes : ndarray of int (sy, sx)
    mixture : fitting.peaks.GaussianMixture or None
    step : float or None  [Å]
    patterns : dict[int, (iy, ix, pattern, center)] or None
        Example pattern per class index: position, pattern (det_y, det_x) [counts], beam centre [px].
    pattern_pixel_size : float or None  [Å⁻¹/px]
    adf : ndarray (sy, sx) or None  [counts]
        Virtual ADF image (e.g. :func:`virtual_adf`); the panel is left out when None.
    adf_q_inner : float  [Å⁻¹]
        Inner radius of the ADF annulus, for its label.
    q_marks : sequence of float  [Å⁻¹]
        Reference positions drawn faintly on (f) (Type 1 0.33/0.6, LiF 111/200/220).
    rng : int or Generator
        Choice of the example I·Q pixels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    with matplotlib.rc_context(_PUBLICATION_RC):
        return _figure2(q, iq, position, classes, mixture, step, patterns, pattern_pixel_size, adf, adf_q_inner,
                        q_marks, rng)  # fmt: skip


#: Font sizes of the multi-panel figures (a 7.2-inch two-column figure).
_PUBLICATION_RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
                   "ytick.labelsize": 7, "legend.fontsize": 6}  # fmt: skip


def _figure2(q, iq, position, classes, mixture, step, patterns, pattern_pixel_size, adf, adf_q_inner, q_marks, rng):
    pos = np.asarray(position, dtype=float)
    c = np.asarray(classes)
    markers = {k: (v[0], v[1]) for k, v in (patterns or {}).items()}
    fig = Figure(figsize=(7.2, 8.6), layout="constrained")
    n_top = max(1, len(patterns or {}))
    sub = fig.subfigures(3, 1, height_ratios=[1.0, 2.05, 1.55], hspace=0.02)
    letters = iter("abcdefgh")
    # (a) patterns
    if patterns and pattern_pixel_size:
        axs = sub[0].subplots(1, max(n_top, 4), squeeze=False)[0]
        for ax in axs[n_top:]:
            ax.set_visible(False)
        for ax, (k, (iy, ix, pat, center)) in zip(axs, sorted(patterns.items())):
            diffraction_pattern(pat, pattern_pixel_size, center=center, ax=ax, color=CLASS_COLORS[k],
                                title=f"{CLASS_LABELS[k]}, pixel ({iy}, {ix})")  # fmt: skip
        _letter(axs[0], next(letters))
    else:
        ax = sub[0].add_subplot()
        ax.text(0.5, 0.5, "no example patterns given", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        next(letters)
    # (b)–(e) maps and histogram
    grid = sub[1].subplots(2, 2)
    if adf is not None:
        virtual_image(adf, step=step, ax=grid[0, 0], markers=markers, label="counts",
                      title=f"virtual ADF (Q ≥ {adf_q_inner:g} Å⁻¹)")  # fmt: skip
    else:
        grid[0, 0].axis("off")
    _letter(grid[0, 0], next(letters))
    class_map(c, step=step, ax=grid[0, 1])
    _letter(grid[0, 1], next(letters))
    peak_map(pos, step=step, ax=grid[1, 0], markers=markers)
    _letter(grid[1, 0], next(letters))
    if np.isfinite(pos).any():
        peak_histogram(pos, mixture, classes=c, ax=grid[1, 1])
    else:
        grid[1, 1].text(0.5, 0.5, "no SRO peak fitted", ha="center", va="center", transform=grid[1, 1].transAxes)
        grid[1, 1].axis("off")
    _letter(grid[1, 1], next(letters))
    # (f) I·Q
    ax = sub[2].add_subplot()
    q = np.asarray(q, dtype=float)
    for qm in [m for m in q_marks if 0.15 <= m <= float(np.nanmax(q))]:
        ax.axvline(qm, color="0.8", lw=0.6, zorder=0)
        ax.text(qm, 0.005, f" {qm:g}", transform=ax.get_xaxis_transform(), fontsize=6, color="0.5", ha="left",
                va="bottom")  # fmt: skip
    q = np.asarray(q, dtype=float)
    class_profiles(q, iq, c, ax=ax, rng=rng, q_range=(0.15, float(np.nanmax(q))),
                   title="I·Q per class: 3 single pixels (thin) and the class mean (thick)")  # fmt: skip
    _letter(ax, next(letters))
    return fig


# ----------------------------------------------------------------------------------------------------------
# fit figures
# ----------------------------------------------------------------------------------------------------------
def fit_figure(comparison, *, top: int = 3, title: str = "", fig=None) -> Figure:
    """Data with each top candidate's model, its components and normalised residuals, and a parameter table.

    Parameters
    ----------
    comparison : fitting.hypotheses.Comparison
        Its ``fits`` (:class:`fitting.model.FitResult` per candidate) give the data, the expected counts of the
        model and of each component, the Pearson residuals and the parameters with their 1σ uncertainties.
    top : int
        Candidates shown (best AIC first).
    title : str
    fig : matplotlib Figure or SubFigure or None
        Draw into this (e.g. one subfigure per class, :func:`fitting.pipeline.hypothesis_figure`).

    Returns
    -------
    matplotlib.figure.Figure
        One column per candidate: I·Q of the data (points) with the model and its components (top) and the
        Pearson residuals (data − model)/√model (bottom); a table of parameters ± 1σ below.
    """
    from fitting.model.results import parameter_units

    rows = list(comparison.rows)[: max(1, int(top))]
    n = len(rows)
    if fig is None:
        fig = Figure(figsize=(3.0 * n + 0.6, 6.4), layout="constrained")
    gs = fig.add_gridspec(3, n, height_ratios=[2.6, 1.0, 1.5])
    share = None
    for j, r in enumerate(rows):
        fit = comparison.fits[r.name]
        used = np.asarray(fit.used, bool)
        qq = np.asarray(fit.q, float)[used]
        e = np.asarray(fit.exposure, float)[used]
        e = np.where(e > 0, e, np.nan)
        y = np.asarray(fit.counts, float)[used]
        mu = np.asarray(fit.expected, float)[used]
        ax = fig.add_subplot(gs[0, j], sharey=share)
        share = share or ax
        ax.plot(qq, y / e * qq, ".", ms=2.5, color="0.3", label="data")
        ax.plot(qq, mu / e * qq, "-", color="k", lw=1.2, label="model")
        for name, ce in zip(fit.component_names, np.asarray(fit.contributions, float)):
            ax.plot(qq, ce[used] / e * qq, "--", lw=0.9, label=name)
        bg = getattr(fit, "background_counts", None)
        if bg is not None and np.any(np.asarray(bg)[used]):
            ax.plot(qq, np.asarray(bg, float)[used] / e * qq, ":", color="0.5", lw=0.9, label="background")
        ax.set_title(f"{j + 1}. {r.name}\nΔAIC {r.delta_aic:.1f}, w {r.akaike_weight:.2f}, "
                     f"dev/dof {r.deviance / max(r.dof, 1):.2f}", fontsize=8)  # fmt: skip
        ax.tick_params(labelsize=7, labelbottom=False)
        if j == 0:
            ax.set_ylabel("I·Q [counts/px · Å⁻¹]", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        ar = fig.add_subplot(gs[1, j], sharex=ax)
        ar.axhline(0, color="0.5", lw=0.6)
        for s in (-2, 2):
            ar.axhline(s, color="0.8", lw=0.5, ls=":")
        ar.plot(qq, np.asarray(fit.residuals, float)[used], "-", color="C3", lw=0.7)
        ar.set_xlabel("Q = 1/d [Å⁻¹]", fontsize=8)
        ar.tick_params(labelsize=7)
        if j == 0:
            ar.set_ylabel("(data − model)/√model", fontsize=7)
        at = fig.add_subplot(gs[2, j])
        at.axis("off")
        bound = np.asarray(getattr(fit, "at_bound", np.zeros(len(fit.param_names), bool)), bool)
        xs, ses = np.asarray(fit.x, float), np.asarray(fit.stderr, float)
        comps = tuple(getattr(fit, "component_names", ()))
        cells = [[f"{k} [{parameter_units(k, comps)}]", _pm(v, se) + (" (at bound)" if b else "")]
                 for k, v, se, b in zip(fit.param_names, xs, ses, bound)]  # fmt: skip
        if cells:
            tab = at.table(cellText=cells, colLabels=["parameter", "value ± 1σ"], loc="upper center",
                           cellLoc="left", colWidths=[0.42, 0.58])  # fmt: skip
            tab.auto_set_font_size(False)
            tab.set_fontsize(6.5)
            tab.scale(1.0, 1.1)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _pm(v, e) -> str:
    if e is None or not np.isfinite(e):
        return f"{v:.4g} (σ n/a)"
    return f"{v:.4g} ± {e:.2g}"


def profile_likelihood_figure(
    x, f, *, name: str, unit: str, best: float, err=None, bounds=None, ylabel: str = "−log L − min"
) -> Figure:
    """Profile of −log L over one refined parameter, with the best value, its 1σ interval and the bounds.

    Parameters
    ----------
    x : array-like  [unit]
        Parameter values evaluated.
    f : array-like  [−log L]
        Objective at ``x``.
    name, unit : str
    best : float  [unit]
    err : float or None  [unit]
        1σ uncertainty (from Δ(−log L) = ½).
    bounds : (float, float) or None  [unit]
    ylabel : str
        What ``f`` is (another objective than −log L: its 1σ line at ½ is then only drawn when ``err`` is given).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = np.asarray(x, dtype=float)
    f = np.asarray(f, dtype=float)
    ok = np.isfinite(x) & np.isfinite(f)
    fig, ax = _fig_ax(None, (4.5, 3.2))
    o = np.argsort(x[ok])
    f0 = np.nanmin(f[ok]) if ok.any() else 0.0
    ax.plot(x[ok][o], f[ok][o] - f0, "o-", ms=3, lw=0.8, color="C0", label="evaluations")
    if ylabel.startswith("−log L") or err is not None:
        ax.axhline(0.5, color="0.6", lw=0.6, ls=":", label="Δ(−log L) = ½ (1σ)")
    ax.axvline(
        best, color="C3", lw=1, label=f"best {best:.3f}" + (f" ± {err:.3f}" if err is not None else "") + f" {unit}"
    )
    if err is not None and np.isfinite(err):
        ax.axvspan(best - err, best + err, color="C3", alpha=0.15)
    if bounds is not None:
        for i, b in enumerate(bounds):
            ax.axvline(b, color="k", lw=0.8, ls="--", label="bounds" if i == 0 else None)
    ax.set_xlabel(f"{name} [{unit}]")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, frameon=False)
    return fig
