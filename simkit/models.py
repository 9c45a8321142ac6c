"""SRO peak positions of amorphous models as the experiment would see them, and models matched to a target peak.

:func:`model_peaks` runs a periodic model through the project's kinematic path — Debye I(Q) with electron
scattering factors (:func:`simkit.kinematic.debye_intensity`, minimum image, Lorch window), the exact probe-disc
convolution rendered on a detector and integrated by :mod:`simkit.radial`
(:func:`simkit.kinematic.probe_convolve`) — and locates the first and second maxima of I·Q with the project's SRO
estimator (:func:`simkit.peak_estimator.sro_peak_position`, width and window from
:func:`simkit.peak_estimator.sro_window`,
the same estimator as the ground truth of :mod:`simkit.synth` and ``fitting.peaks.sro_peak_map``).

The Debye sum of a periodic model runs over pair distances ≤ L/2 of its own cell (minimum image, Lorch window);
for the small relaxed models (≈ 100 atoms, L ≈ 11 Å) that is ≈ 5.5 Å, which broadens the peaks but measures the
amorphous structure. Repeating the box first (``min_box`` > 0, :func:`tile_to`) does not widen the window for
free: a repeat is a crystal with lattice constant L, and pairs beyond L/2 include every atom's own images at the
lattice vectors, so the sum then shows that lattice's reciprocal vectors |n|/L (0.091, 0.129, 0.158 … Å⁻¹ for
L = 11 Å) — shoulders at 2 mrad, ripples at small convergence — and a shifted first peak. The default is therefore
``min_box=0``; a larger window needs a larger model, not a repeated one.

:func:`scale_to_peak` matches a model to a requested first-peak position by an isotropic scaling of all
coordinates and the cell (density ρ → ρ·s⁻³): for a homogeneous scaling every pair distance scales by s and the
peak of the distinct-pair part moves as 1/s; the self term ⟨f²⟩ (falling with Q) and the probe convolution
pull the I·Q maximum, so the measured peak responds more weakly, and a few secant iterations on the measured
peak find the factor (to ``tol``, default 0.001 Å⁻¹).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FIRST_PEAK_RANGE",
    "SECOND_PEAK_RANGE",
    "STUDY_PEAKS",
    "model_peaks",
    "relaxed_table",
    "scale_to_peak",
    "second_feature",
    "tile_to",
    "markdown_table",
    "type1_ranking",
]

#: Search range [Å⁻¹] of the first SRO maximum of I·Q (that of the synthesiser's ground truth).
FIRST_PEAK_RANGE = (0.22, 0.42)
#: Search range [Å⁻¹] of the second maximum of I·Q (the study's ≈ 0.6 Å⁻¹ of Type 1).
SECOND_PEAK_RANGE = (0.45, 0.80)


def tile_to(atoms, min_box: float):
    """Repeat a periodic model so that every cell width is at least ``min_box`` [Å] (0: a copy)."""
    if not (math.isfinite(min_box) and min_box >= 0):
        raise ValueError(f"min_box={min_box!r} Å must be >= 0 (0: no repeat)")
    widths = atoms.cell.volume / np.linalg.norm(np.cross(atoms.cell[[1, 2, 0]], atoms.cell[[2, 0, 1]]), axis=1)
    reps = tuple(int(max(1, math.ceil(min_box / w))) for w in widths)
    return atoms.repeat(reps) if reps != (1, 1, 1) else atoms.copy()


def model_peaks(
    atoms,
    *,
    semiangle: float = 2.0,
    energy: float = 300e3,
    q_max: float = 1.2,
    n_q: int = 400,
    min_box: float = 0.0,
    plan=None,
) -> dict:
    """First and second I·Q peak positions of a periodic model after the probe convolution.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic amorphous model.
    semiangle : float  [mrad]
        Probe convergence semi-angle (the study: 2 mrad).
    energy : float  [eV]
        Beam energy.
    q_max : float  [Å⁻¹]
        Largest Q of the Debye grid.
    n_q : int
        Debye grid points (from 0.02 Å⁻¹).
    min_box : float  [Å]
        0 (default): the model's own cell (pair cut-off L/2). A value repeats the model until every cell width
        reaches it (cut-off half of it): for a periodic model this adds its image pairs and the peaks of its
        repeat lattice at |n|/L (see the module docstring); only for comparison.
    plan : simkit.kinematic.ProbeConvolution or None
        Reuse a plan made for the same grid and probe.

    Returns
    -------
    dict
        ``q1``, ``q2`` [Å⁻¹]: maxima of the probe-convolved I·Q by the SRO estimator (NaN where it finds none
        inside its range; ``q2`` also NaN unless the profile has a local maximum strictly inside
        :data:`SECOND_PEAK_RANGE` — with electron scattering factors falling steeply the ≈ 0.6 Å⁻¹ feature is
        often only a shoulder of I·Q); ``q2_shoulder`` [Å⁻¹]: the second feature's position by
        :func:`second_feature` (the maximum if there is one, else the shoulder; NaN if neither lies inside the
        range — a rise or a flattening that continues up to the range's edge is no feature); ``q`` [Å⁻¹], ``iq`` and
        ``reduced_q`` (Q·(I − ⟨f²⟩)/⟨f⟩², distinct pairs only;
        the convolved, radially integrated curves); ``density`` [g/cm³] of the model.
    """
    from simkit.kinematic import debye_intensity, make_probe_convolution, probe_convolve, scattering_factor
    from simkit.peak_estimator import sro_peak_position, sro_window

    qg = np.linspace(0.02, float(q_max), int(n_q))
    big = tile_to(atoms, min_box)
    iq = debye_intensity(big, qg, periodic=True)
    sym, cnt = np.unique(big.get_chemical_symbols(), return_counts=True)
    x = cnt / cnt.sum()
    f = np.stack([scattering_factor(s, qg) for s in sym])
    f2, f_mean = np.sum(x[:, None] * f**2, axis=0), np.sum(x[:, None] * f, axis=0)
    reduced = (iq - f2) / f_mean**2  # S(Q) − 1 in the Faber–Ziman sense (distinct pairs only)
    plan = plan or make_probe_convolution(qg, semiangle=semiangle, energy=energy)
    prof = probe_convolve(qg, np.stack([iq, reduced]), semiangle=semiangle, energy=energy, plan=plan)
    w, h = sro_window(semiangle, energy)
    out = {"q": prof.q, "iq": prof.mean[0] * prof.q, "reduced_q": prof.mean[1] * prof.q}
    fit = sro_peak_position(prof.q, prof.mean[0], FIRST_PEAK_RANGE, width=w, half_width=h, n=1)
    out["q1"] = float(fit.position) if bool(fit.ok) else float("nan")
    maximum, shoulder = second_feature(prof.q, out["iq"], width=w)
    out["q2"], out["q2_shoulder"] = float("nan"), shoulder
    if math.isfinite(maximum):  # the estimator's position of a maximum the profile really has inside the range
        fit = sro_peak_position(prof.q, prof.mean[0], SECOND_PEAK_RANGE, width=w, half_width=h, n=1)
        out["q2"] = float(fit.position) if bool(fit.ok) else float("nan")
    out["density"] = float(np.sum(atoms.get_masses()) / atoms.get_volume() * 1.66053906660)
    return out


def second_feature(q, iq, *, width: float, q_range: tuple[float, float] = SECOND_PEAK_RANGE) -> tuple[float, float]:
    """Position of a maximum, and of a maximum-or-shoulder, of a profile strictly inside ``q_range``.

    The profile is smoothed by a Gaussian of σ = ``width``/2 (the last 3·``width`` of the grid, where the
    smoothing runs off the data, are not searched). A *maximum* is a local maximum of the smoothed profile; a
    *shoulder* is where a falling profile is flattest: a local maximum of its slope at which the slope is still
    negative (an inflection pair enclosing a hump too weak to make a maximum). Both must be local extrema of
    the curve itself, with neighbours on both sides: the largest value of a quantity that is still rising at
    the edge of ``q_range`` is the edge, not a feature, and gives NaN. Positions are refined by a parabola
    through the three bins around the extremum.

    Parameters
    ----------
    q : array_like, shape (n,)  [Å⁻¹]
        Increasing, evenly spaced grid.
    iq : array_like, shape (n,)  [arbitrary]
        Profile (I·Q); NaN bins are dropped.
    width : float  [Å⁻¹]
        Width of the feature sought (the SRO estimator's peak width); the smoothing σ is half of it.
    q_range : tuple of float  [Å⁻¹]
        Where the feature must lie.

    Returns
    -------
    maximum : float  [Å⁻¹]
        The highest local maximum of the smoothed profile inside the range, NaN if none.
    feature : float  [Å⁻¹]
        ``maximum`` if there is one, else the flattest shoulder (largest negative slope among the local maxima of
        the slope), NaN if neither.
    """
    q, y = np.asarray(q, dtype=float), np.asarray(iq, dtype=float)
    if q.ndim != 1 or q.shape != y.shape:
        raise ValueError(f"q and iq must be 1-D of one length; got shapes {q.shape} and {y.shape}")
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width={width!r} Å⁻¹ must be a positive finite number")
    lo, hi = (float(v) for v in q_range)
    if not lo < hi:
        raise ValueError(f"q_range={q_range!r} Å⁻¹ must be increasing (lo, hi)")
    ok = np.isfinite(y)
    qs, ys = q[ok], y[ok]
    if qs.size < 5:
        return float("nan"), float("nan")
    dq = float(np.median(np.diff(qs)))
    k = np.arange(-int(3 * width / dq), int(3 * width / dq) + 1) * dq
    g = np.exp(-0.5 * (k / (0.5 * width)) ** 2)
    ysm = np.convolve(ys, g / g.sum(), mode="same")
    d1 = np.gradient(ysm, qs)
    trusted = (qs > qs[0] + 3 * width) & (qs < qs[-1] - 3 * width)
    i = np.arange(1, qs.size - 1)
    i = i[trusted[i - 1] & trusted[i + 1] & (qs[i] > lo) & (qs[i] < hi)]

    def refine(f, j) -> float:
        den = f[j - 1] - 2 * f[j] + f[j + 1]
        off = 0.5 * (f[j - 1] - f[j + 1]) / den if den < 0 else 0.0
        x = float(qs[j] + np.clip(off, -0.5, 0.5) * dq)
        return x if lo < x < hi else float("nan")

    peaks = i[(ysm[i] >= ysm[i - 1]) & (ysm[i] > ysm[i + 1])]
    if peaks.size:
        x = refine(ysm, int(peaks[np.argmax(ysm[peaks])]))
        return x, x
    sh = i[(d1[i] >= d1[i - 1]) & (d1[i] > d1[i + 1]) & (d1[i] < 0)]
    if sh.size:
        return float("nan"), refine(d1, int(sh[np.argmax(d1[sh])]))
    return float("nan"), float("nan")


def scale_to_peak(atoms, target: float, *, tol: float = 0.001, max_iter: int = 10, **peak_kwargs):
    """Isotropically scale a periodic model so that its measured first I·Q peak sits at ``target``.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic model (not modified).
    target : float  [Å⁻¹]
        Requested first-peak position, inside :data:`FIRST_PEAK_RANGE`.
    tol : float  [Å⁻¹]
        Stop when |q1 − target| < tol.
    max_iter : int
        Bound on the iterations; RuntimeError when not met.
    **peak_kwargs
        Passed to :func:`model_peaks` (semiangle, energy, ...).

    Returns
    -------
    ase.Atoms
        Scaled copy; ``info["scale_to_peak"]`` holds target, measured q1 [Å⁻¹], the linear factor s,
        the original and the scaled density [g/cm³].
    """
    lo, hi = FIRST_PEAK_RANGE
    if not (lo < float(target) < hi):
        raise ValueError(f"target={target!r} Å⁻¹ is outside the first-peak range {FIRST_PEAK_RANGE}; give one inside")
    q0 = model_peaks(atoms, **peak_kwargs)["q1"]
    if not math.isfinite(q0):
        raise ValueError("the model shows no first SRO peak in range; it cannot be scaled to a peak position")
    # secant iteration on the linear factor s (the first step assumes Q₁ ∝ 1/s; the self term ⟨f²⟩ of I·Q and
    # the probe convolution make the true response weaker, which the secant slope then measures)
    s_prev, q_prev = 1.0, q0
    s = q0 / float(target)
    for _ in range(max_iter):
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * s, scale_atoms=True)
        q = model_peaks(scaled, **peak_kwargs)["q1"]
        if not math.isfinite(q):
            raise RuntimeError(f"scale_to_peak lost the first SRO peak at linear factor {s:.4f}")
        if abs(q - target) < tol:
            break
        slope = (q - q_prev) / (s - s_prev) if s != s_prev else -q / s
        if not (math.isfinite(slope) and slope < 0):
            slope = -q / s
        s_prev, q_prev = s, q
        s = s + (float(target) - q) / slope
    else:
        raise RuntimeError(f"scale_to_peak did not reach {target} ± {tol} Å⁻¹ in {max_iter} steps (last {q:.4f})")
    rho0 = float(np.sum(atoms.get_masses()) / atoms.get_volume() * 1.66053906660)
    scaled.info = dict(atoms.info)
    scaled.info["scale_to_peak"] = {
        "target": float(target),
        "q1": float(q),
        "linear_factor": float(s),
        "density_relaxed": rho0,
        "density": rho0 / s**3,
    }
    return scaled


#: The study's first-peak positions [Å⁻¹] (and the second for Type 1) by model kind.
STUDY_PEAKS = {"type1": (0.33, 0.60), "type2": (0.295, None), "electrolyte": (0.285, None)}


def relaxed_table(names=None, *, semiangle: float = 2.0, energy: float = 300e3) -> list[dict]:
    """Peaks of every shipped relaxed model (each seed) beside the study's values.

    Parameters
    ----------
    names : sequence of str or None
        Library models (default: all shipped, :func:`structures.relax.model_names`).
    semiangle : float  [mrad]
    energy : float  [eV]

    Returns
    -------
    list of dict
        One row per model and seed: ``model``, ``kind``, ``seed``, ``n_atoms``, ``density`` [g/cm³],
        ``q1``, ``q2``, ``q2_shoulder`` [Å⁻¹] (see :func:`model_peaks`), ``study_q1``, ``study_q2``,
        ``minimised`` (the file is the converged 0 GPa minimum of :func:`structures.relax.minimise`, not the NPT
        anneal's last frame).
    """
    from structures import relax

    rows = []
    for name in names or relax.model_names():
        for seed in relax.model_seeds(name):
            atoms = relax.load_model(name, seed)
            p = model_peaks(atoms, semiangle=semiangle, energy=energy)
            kind = atoms.info.get("kind", relax.LIBRARY[name].kind)
            sq1, sq2 = STUDY_PEAKS.get(kind, (None, None))
            rows.append(
                {
                    "model": name,
                    "kind": kind,
                    "seed": int(seed),
                    "n_atoms": len(atoms),
                    "density": p["density"],
                    "q1": p["q1"],
                    "q2": p["q2"],
                    "q2_shoulder": p["q2_shoulder"],
                    "study_q1": sq1,
                    "study_q2": sq2,
                    "minimised": bool(atoms.info.get("minimisation", {}).get("converged", False)),
                }
            )
    return rows


def type1_ranking(rows) -> list[tuple[str, float]]:
    """C-free Type 1 candidates ordered by their distance [Å⁻¹] to the study's (0.33, 0.60) pair.

    Distance = √((Q₁ − 0.33)² + (Q₂ − 0.60)²) of the seed-averaged Q₁ and Q₂ (the I·Q maximum if there is one,
    else the shoulder position; seeds without a value are left out of that mean). A candidate without any
    second feature inside :data:`SECOND_PEAK_RANGE` in every seed has no distance (NaN) and is ranked last:
    it does not give the pair at all.
    """
    by: dict = {}
    for r in rows:
        if r["kind"] != "type1":
            continue
        q2 = r["q2"] if math.isfinite(r["q2"]) else r["q2_shoulder"]
        by.setdefault(r["model"], []).append((r["q1"], q2))
    out = []
    for name, v in by.items():
        a = np.array(v, dtype=float)
        m = [float(np.mean(c[np.isfinite(c)])) if np.any(np.isfinite(c)) else float("nan") for c in a.T]
        out.append((name, float(np.hypot(m[0] - 0.33, m[1] - 0.60))))
    return sorted(out, key=lambda t: (not math.isfinite(t[1]), t[1]))


def _fmt(x, nd=3):
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def markdown_table(rows) -> str:
    """The README table (one row per model and seed) followed by the Type 1 ranking."""
    lines = [
        "| model | seed | atoms | density [g/cm³] | Q₁ [Å⁻¹] | Q₂ max [Å⁻¹] | Q₂ shoulder [Å⁻¹] "
        "| study Q₁ / Q₂ [Å⁻¹] | 0 GPa minimised |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        study = _fmt(r["study_q1"]) + (" / " + _fmt(r["study_q2"], 2) if r["study_q2"] else "")
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['n_atoms']} | {_fmt(r['density'])} | {_fmt(r['q1'])} | "
            f"{_fmt(r['q2'])} | {_fmt(r['q2_shoulder'])} | {study} | {'yes' if r.get('minimised') else 'no (NPT)'} |"
        )
    lines += ["", "Ranking of the C-free Type 1 candidates by distance to (0.33, 0.60) Å⁻¹"]
    lines += ["(seed means; Q₂ = the maximum, else the shoulder):", ""]
    lo, hi = SECOND_PEAK_RANGE
    for k, (name, d) in enumerate(type1_ranking(rows), 1):
        if math.isfinite(d):
            lines.append(f"{k}. `{name}` — {d:.3f} Å⁻¹")
        else:
            lines.append(f"{k}. `{name}` — no second maximum or shoulder inside {lo:.2f}–{hi:.2f} Å⁻¹ in any seed")
    return "\n".join(lines)


def _main(argv=None) -> None:  # pragma: no cover  (prints / refreshes the README table)
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m simkit.models", description="peaks of the shipped relaxed models")
    ap.add_argument("--readme", help="replace the block between the relaxed-table markers of this file")
    a = ap.parse_args(argv)
    table = markdown_table(relaxed_table())
    print(table)
    if a.readme:
        path = Path(a.readme)
        text = path.read_text(encoding="utf-8")
        start, end = "<!-- relaxed-table:start -->\n", "\n<!-- relaxed-table:end -->"
        i, j = text.index(start) + len(start), text.index(end)
        from simkit.atomic import atomic_write_text

        atomic_write_text(path, text[:i] + table + text[j:])


if __name__ == "__main__":  # pragma: no cover
    _main()
