"""Figure of a plan: decision probability and expected ΔlogL vs accumulated local fluence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fitting.plan.core import PlanResult

_ERR_FLOOR = 1e-6  # error probabilities below this are drawn at it (the asymptotic tail means nothing there)


# ----------------------------------------------------------------------------------------------------------------
# figure
# ----------------------------------------------------------------------------------------------------------------
def plot_plan(result: PlanResult, path=None):
    """Error probability and expected ΔlogL vs local fluence, one line per semi-angle and step.

    Left: P(wrong decision) = 1 − P(correct) on a log axis (asymptotic lines, simulated crosses; values below
    10⁻⁶ are drawn at 10⁻⁶), the required confidence dotted. Right: the expected (Asimov) ΔlogL. Both panels
    mark the local fluence at which damage reaches ``result.max_damage`` (shaded beyond) and the study's
    3600 e/Å² expressed as local fluence.

    Parameters
    ----------
    result : PlanResult
    path : str or Path or None
        Write the figure there (PNG/PDF/SVG by extension, atomically); None → only return it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 4.2), layout="constrained")
    ax_p, ax_l = fig.subplots(1, 2)
    keys = sorted({(r.semiangle, r.step) for r in result.rows}, key=lambda k: (-k[0], k[1]))
    colours = {a: f"C{i}" for i, a in enumerate(sorted({k[0] for k in keys}, reverse=True))}
    styles = ["-", "--", ":", "-."]
    steps = sorted({k[1] for k in keys})
    for alpha, step in keys:
        rr = sorted((r for r in result.rows if (r.semiangle, r.step) == (alpha, step)), key=lambda r: r.local_fluence)
        x = [r.local_fluence for r in rr]
        kw = {"color": colours[alpha], "ls": styles[steps.index(step) % len(styles)], "marker": "o", "ms": 4}
        label = f"{alpha:g} mrad, {step / 10:g} nm"
        err = np.array([1.0 - r.p_correct for r in rr])
        ax_p.plot(x, np.maximum(err, _ERR_FLOOR), label=label, **kw)
        err_sim = np.array([1.0 - r.p_correct_sim for r in rr])
        shown = np.isfinite(err_sim) & (err_sim > 0)
        ax_p.plot(np.asarray(x)[shown], err_sim[shown], ls="none", marker="x", color=colours[alpha], ms=6)
        dl = np.array([min(r.delta_loglike_a, r.delta_loglike_b) for r in rr])
        ax_l.plot(x, np.where(dl > 0, dl, np.nan), label=label, **kw)
    for ax in (ax_p, ax_l):
        ax.set_xscale("log")
        ax.set_xlabel("accumulated local fluence (probe-weighted) [e/Å²]")
        lo, hi = ax.get_xlim()
        lines = [(result.damage_fluence, f"{100 * result.max_damage:g} % damage ", "k", "-")]
        lines.append((result.study_threshold_local, "3600 e/Å² scan (study: → Li₂O) ", "0.3", "--"))
        for xv, text, colour, ls in lines:
            if not np.isfinite(xv):
                continue
            ax.axvline(xv, color=colour, lw=1.1, ls=ls)
            ax.text(xv, 0.98, text, rotation=90, transform=ax.get_xaxis_transform(), va="top", ha="right",
                    fontsize=8, color=colour)  # fmt: skip
            hi = max(hi, 1.5 * xv)
        if np.isfinite(result.damage_fluence):
            ax.axvspan(result.damage_fluence, hi, color="0.9", zorder=0)
        ax.set_xlim(lo, hi)
    ax_p.axhline(1.0 - result.confidence, color="C3", lw=1, ls=":")
    ax_p.text(0.02, 1.0 - result.confidence, f"required: P(correct) ≥ {result.confidence:g}", va="bottom",
              ha="left", fontsize=8, color="C3", transform=ax_p.get_yaxis_transform())  # fmt: skip
    ax_p.text(0.02, 0.02, "values below 10⁻⁶ drawn at 10⁻⁶", transform=ax_p.transAxes, fontsize=7, color="0.4")
    ax_p.set_yscale("log")
    ax_p.set_ylim(0.5 * _ERR_FLOOR, 0.7)
    ax_p.set_ylabel("P(wrong decision) = 1 − P(correct)\n(o asymptotic, × simulated)")
    ax_l.set_yscale("log")
    ax_l.set_ylabel("expected ΔlogL = log L_A − log L_B\n(Asimov, worse of A true / B true)")
    ax_l.legend(fontsize=8, loc="upper left")
    a, b = result.hypotheses
    fig.suptitle(f"{a} vs {b}, {result.region_pixels} pixel(s) per decision", fontsize=10)
    if path is not None:
        from simkit.atomic import atomic_path

        p = Path(path)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=120, format=p.suffix.lstrip(".") or "png")
    return fig
