"""Pixel classes of a SEND scan (vacuum, Li metal, Cu, Li₂O, SEI Type 1, SEI Type 2, electrolyte, and
unassigned for patterns that match no known phase) and layer thicknesses.

Features (per probe position; :func:`features`)
-----------------------------------------------
``scattered``
    Fraction of the counts at Q < ``q_scatter_max`` (0.64 Å⁻¹) that lie at Q ≥ ``q_direct`` (outside the direct
    beam) — a thickness/mass proxy. The fixed upper end keeps it independent of the detector's reach (camera
    length): amorphous matter scatters out to high Q, a grain into a few discs, so over a detector reaching
    0.83 Å⁻¹ a Type 1 pixel's fraction grows by ≈ 30 % and a Li grain's hardly; the thresholds hold for 0.64.
``spot_z[phase]``
    Bragg-spot evidence for each crystal: from ``n_phi`` sector profiles (``simkit.radial``) the excess of the
    brightest sector over the sector median, in units of its noise,
    z(Q) = (max_s I_s − median_s I_s) / sqrt(σ² + (0.05·median)²) with σ the Poisson standard error of a
    sector mean, smoothed over 3 Q bins; z is read at each reflection of the phase (linear interpolation) and
    the largest value over the phase's reflections is kept (not every reflection is excited in a given
    orientation): :data:`REFLECTIONS`, computed from the cryogenic lattice constants of
    ``structures.crystals.LATTICE_CONSTANTS`` (Li 110 0.406 / 200 0.574 / 211 0.703, Cu 111 0.480 / 200 0.555 /
    220 0.785, LiF 200 0.499 / 220 0.706, Li₂O 111 0.377 / 220 0.615 Å⁻¹); 0 (no evidence) outside the measured Q
    range.
``anisotropy``
    Mean relative azimuthal standard deviation (std over sectors / mean) over 0.15–0.75 Å⁻¹ minus its Poisson
    expectation — a single "how spotty" number for maps.
``ring_z``
    Sharp isotropic Li₂O rings (polycrystalline or damaged SEI): the azimuthal median profile minus its
    running-mean smooth (±``ring_halfwidth`` bins), at the Li₂O 111 and 220 positions, in noise units.
``sro_position``
    SRO peak position [Å⁻¹] from ``fitting.peaks.sro_peak_map`` (the project's estimator).
``second_peak``
    Strength of a second SRO peak near 0.6 Å⁻¹ (SEI Type 1): mean I·Q over 0.57–0.63 Å⁻¹ divided by the mean
    of the means over 0.47–0.53 and 0.67–0.73 Å⁻¹ of the isotropic (sector-median) profile, minus 1.

``bragg``
    Fraction of the counts at 0.2–0.9 Å⁻¹ that lie in anisotropic excess over the azimuthal median, summed over
    sectors: Σ_s Σ_Q max(I_s − median_s I_s − ``n_sigma``·σ_s, 0)·n_s / Σ_Q counts (σ_s the Poisson standard
    error of the sector mean, n_s its pixels) — the share of the scattering in Bragg discs, ≈ 0 for amorphous
    matter at any dose. With a 2 mrad probe the discs have a radius of 0.10 Å⁻¹ at 300 keV, so they cover
    ±0.1 Å⁻¹ around each reflection and spot z-scores read at one Q (``spot_z``) cannot tell phases apart.
``bragg_q``
    |g| [Å⁻¹] of the brightest disc: in the sector holding most of that excess, the midpoint of the disc's radial
    extent — the run of Q bins around the largest excess whose excess exceeds ``DISC_EDGE_SHARE`` (10 %) of it.
    A ray from the pattern centre through a disc centre crosses the disc from |g| − r to |g| + r, so the midpoint
    is |g| whatever the intensity inside the disc (dynamical rocking across a 2 mrad disc of a 60 nm grain) and
    whatever the pixel count per bin; the excess-weighted centroid is not (Cu 200 at 0.555 Å⁻¹ read at 0.568, nearer
    Li 200 at 0.574, on a detector that holds the whole disc; the midpoint reads 0.554). Along one sector, discs of g
    and 2g lie ≥ 0.37 Å⁻¹ apart, so their runs do not join. A run cut by the detector edge or the window (Cu 220
    at 0.785 Å⁻¹ of a Cu [111] grain on a detector reaching 0.81) is placed one disc radius beyond its inner edge,
    the radius measured on the scan's whole discs (median half-width of the runs; 0.10 Å⁻¹ at 2 mrad and 300 keV).
``ring_max``, ``ring_q``
    The strongest sharp isotropic ring anywhere in 0.2–0.9 Å⁻¹ (significance as ``ring_z``, ≥ 10 % above the
    running mean) and its Q [Å⁻¹] (NaN without one) — a ring of a phase the rules may not know.
``beam_contrast``
    Mean counts per pixel at Q < ``q_direct`` over those at Q ≥ ``q_direct``: ≫ 1 with a direct beam, ≈ 1 for a
    flat frame, NaN for a blank one.
``high_q``
    I·Q of the isotropic profile over 0.55–0.62 Å⁻¹ divided by that over 0.22–0.30 Å⁻¹: the second SRO ring of
    inorganic SEI Type 1 (≈ 0.6 Å⁻¹) keeps I·Q high there (ratio ≈ 0.6–0.9 on the simkit Type 1 and Type 2
    matrices) while the molecular electrolyte's falls off (≈ 0.35–0.45). Both bands lie inside the full rings of
    a 256² detector at 0.005 Å⁻¹/px (0.64 Å⁻¹) as of the default one (0.83 Å⁻¹).

Rules (:func:`classify`, in this order of precedence; thresholds are fields of :class:`ClassifyRules`)
-----------------------------------------------------------------------------------------------------
1. ``scattered < vacuum_max`` → **vacuum/thin**.
2. Crystal: ``bragg ≥ crystal_min`` (0.3), or ``bragg ≥ weak_crystal_min`` (0.025) with ``bragg_q`` not
   within ``lif_tol`` of a LiF reflection → the phase (Li, Cu, Li₂O) with the reflection nearest ``bragg_q``:
   **Li metal**, **Cu**, **Li₂O**. A metal grain puts ≥ 8 % of its scattering in discs (Li ≈ 0.55, Cu ≈ 0.9
   on the simkit scans, ≈ 0.07–0.1 on the analytic test scans). ``bragg`` counts the disc excess that stands
   above the noise, so it grows with dose: the 5 %-volume LiF of Type 2 shows ≈ 0.01 at 10⁵ e/pattern but
   0.045 (95th percentile 0.10) at 10⁶ — with the former 0.06 half the Type 2 pixels became Cu at 4 × 10⁵ e.
   Discs at LiF positions therefore make a crystal only above 0.3; a Cu grain whose discs sit near LiF 200 is
   still **Cu** through the ``dense_min`` rule (it scatters ≥ 0.24 of the beam, Type 2 ≈ 0.11). A Li grain
   under a 5 % Li₂O surface oxide stays **Li metal**: its Li 110 disc (0.406) outweighs the oxide's weak Li₂O
   111 (0.376), so the centroid sits at Li; Li₂O is called only when Li₂O discs dominate.
   Minority crystal: a metal pixel (Li or Cu) whose Bragg fraction *and* scattered fraction are both below
   ``minority_ratio`` (½) of the medians of its phase in the same scan (≥ 10 such pixels) is an amorphous
   column grazing a grain (the probe footprint of a Type 1 pixel next to Li: 4–11 % Li gives Bragg 0.07–0.25 and
   scattered 0.12–0.15, against 0.73 and 0.39 for the grain on the demo scan) and goes to the rules below. Both
   conditions, and scan-relative: a grain in a weakly diffracting orientation still scatters like its phase.
   Li or Cu when the discs cannot tell: Li 200 (0.574) and Cu 200 (0.555 Å⁻¹) lie 0.019 Å⁻¹ apart, Li 211
   (0.703) and Cu 220 (0.785) 0.08. A metal pixel whose disc position lies within ``metal_tol`` (0.05 Å⁻¹, half a
   2 mrad disc radius; the disc midpoint is good to about a bin, while the former excess centroid read a Cu grain
   whose 111 discs overlap into a near-ring at 0.436 and needed 0.1) of a Li and a Cu reflection moves to the
   other metal when its scattered fraction lies
   within 3 spreads (MAD) of that phase's scan median and more than 3 from its own (both phases with ≥ 10
   pixels; Cu = by its discs or by rule 3's scattering) — the scattering power, not the disc position, tells the
   element (full ``bottom`` scans: Cu 51–74 % → 100 % right).
3. Sharp isotropic Li₂O rings, ``ring_z ≥ ring_min`` → **Li₂O** (polycrystalline or damaged SEI); then a
   pixel without discs that scatters ``scattered ≥ dense_min`` (0.22) of the beam → **Cu** (a Cu grain whose
   discs miss the detector, e.g. [111], or sit near LiF 200 — the SEI scatters ≤ 0.19, Cu ≥ 0.24).
4. Weak discs at LiF: ``bragg ≥ lif_min`` (0.004, above the ≤ 0.004 noise floor of amorphous pixels at 10⁵
   e/pattern) with ``bragg_q`` within ``lif_tol`` (0.05 Å⁻¹) of LiF 200/220 → **SEI Type 2** (SRO ring plus
   sparse anisotropic LiF spots).
5. Amorphous: ``high_q ≥ high_q_split`` (0.55) → **SEI Type 1**, otherwise **electrolyte**; either kind of pixel
   whose (2·``lif_radius`` + 1)² neighbourhood shows LiF discs in at least ``lif_share`` (½) of its amorphous
   pixels → **SEI Type 2** (its own LiF crystallites are out of Bragg condition or absent from the column: on
   the demo-library `bottom` scene 26 % of pure Type 2 pixels show none; 74 → 96 % of them classified right).
   Where LiF spots are rarer still — only ≈ 25 % of random 3 nm LiF orientations show discs at 2 mrad (24 random
   crystals measured), so 18–25 % of Type 2 pixels have spots of their own inside 0.64 Å⁻¹ and 43 % on the
   default detector (0.83 Å⁻¹, LiF 220 inside) — the frequency of spots decides: an SEI pixel (Type 1 or 2, no
   crystal, not dense) whose Gaussian-weighted (``lif_sigma`` = 2 px) share of SEI pixels with spots reaches
   ``lif_level`` (0.6) of the scan's 95th percentile is **SEI Type 2** (needs ≥ 5 pixels with spots and a 95th
   percentile ≥ 0.1; a Type 1 layer has none). On a bottom scan (30 × 90, seed 5) with 24 random LiF orientations
   on the default detector: Type 2 58 → 93 % right, Type 1 97 %, all pure pixels 96 → 99 %. Its 15 nm layer is 4
   pixels wide and the window blurs the boundary by about one: at ``lif_level`` ½ half the pure Type 1 pixels
   next to Type 2 read as Type 2 once LiF 220 spots are seen too (Type 2 with spots in 94 % of its pixels).
Type 2 and electrolyte have close SRO positions (0.295 vs 0.285): they are told apart by the LiF spots, never by
the position; nor is Type 1 told by its position (0.31–0.34 on the simkit scenes, overlapping Type 2). A Type 2
pixel whose LiF crystallites are out of Bragg condition (or below the noise: at 10⁴ e/pattern the 5 % LiF spots
are not detected) is classified as Type 1 unless its neighbours show LiF (rule 5) — an isolated one stays a
limitation of any diffraction-only rule. A metal pixel whose grain
shows no disc inside the detector (e.g. Cu [111], first discs at 220 = 0.78 Å⁻¹, only in the detector corners)
falls to the amorphous rules.

Open world: a reflection outside the measured Q range (or beyond the detector edge of a pattern) is no evidence
(0), never extrapolated. **unassigned** is given to (a) a crystal whose disc centroid lies farther than
``assign_tol`` from every known reflection (an unknown crystal is not its nearest known phase), (b) an isotropic
sharp ring (``ring_max`` ≥ ``ring_min``, ≥ 10 % above its running mean) farther than ``lif_tol`` from every known
reflection, and (c) blank frames (no counts) and flat frames (``beam_contrast`` below ``min_beam_contrast`` and no
Bragg discs: saturated, 1-bit all-ones, or the direct beam behind a beam stop), with a ``UserWarning``
(:func:`frame_warnings`).
All thresholds sit in one versioned :class:`ClassifyRules` (defaults tuned on synthetic scenes).

Unsupervised alternative: :func:`cluster_profiles` (k-means via ``scipy.cluster.vq.kmeans2`` or a
multiplicative-update NMF in NumPy on normalised I·Q profiles).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from numba import njit, prange

__all__ = [
    "CLASSES",
    "REFLECTIONS",
    "RULES_VERSION",
    "ClassifyRules",
    "Features",
    "LayerThickness",
    "classify",
    "cluster_profiles",
    "features",
    "frame_warnings",
    "layer_thickness",
]

#: Class names; the class map holds their index (−1 = unclassified).
CLASSES = ("vacuum", "li_metal", "cu", "li2o", "sei_type1", "sei_type2", "electrolyte", "unassigned")

#: (phase, (h, k, l)) of the reflections read for each phase's evidence (not every reflection is excited in a
#: given orientation, so each phase has two or three: Li 211 and Cu 220 are the first discs of [111] grains).
_REFLECTION_HKL = {
    "li": (("Li", (1, 1, 0)), ("Li", (2, 0, 0)), ("Li", (2, 1, 1))),
    "cu": (("Cu", (1, 1, 1)), ("Cu", (2, 0, 0)), ("Cu", (2, 2, 0))),
    "lif": (("LiF", (2, 0, 0)), ("LiF", (2, 2, 0))),
    "li2o": (("Li2O", (1, 1, 1)), ("Li2O", (2, 2, 0))),
}


def _reflections() -> dict[str, tuple[float, ...]]:
    from fitting.calibrate import reflection_q

    return {k: tuple(round(reflection_q(ph, hkl, "cryo"), 4) for ph, hkl in v) for k, v in _REFLECTION_HKL.items()}


#: Reflection positions Q = 1/d [Å⁻¹] of the spot and ring features, from the cryogenic (100 K) lattice constants
#: of ``structures.crystals.LATTICE_CONSTANTS`` (Li 110/200/211, Cu 111/200/220, LiF 200/220, Li₂O 111/220).
REFLECTIONS = _reflections()
_PHASE_CLASS = {"li": "li_metal", "cu": "cu", "lif": "sei_type2", "li2o": "li2o"}


@dataclass(frozen=True, kw_only=True, eq=False)
class Features:
    """Per-pixel features (arrays of shape (sy, sx)); see the module docstring for definitions."""

    scattered: np.ndarray
    spot_z: dict
    anisotropy: np.ndarray
    ring_z: np.ndarray
    sro_position: np.ndarray
    sro_ok: np.ndarray
    second_peak: np.ndarray
    total: np.ndarray
    bragg: np.ndarray
    bragg_q: np.ndarray
    high_q: np.ndarray
    ring_max: np.ndarray
    ring_q: np.ndarray
    beam_contrast: np.ndarray
    q_measured: tuple


def _interp_last(q, a, q0, finite=None):
    """Linear interpolation of a[..., :] (on q) at q0; 0 (no evidence) where q0 lies outside the measured bins
    ``q`` or where one of the two bins around q0 is not measured (``finite`` False: beyond the detector edge).
    Never extrapolates."""
    if not (q[0] <= q0 <= q[-1]):
        return np.zeros(a.shape[:-1])
    i = int(np.clip(np.searchsorted(q, q0) - 1, 0, q.size - 2))
    t = (q0 - q[i]) / (q[i + 1] - q[i])
    v = (1 - t) * a[..., i] + t * a[..., i + 1]
    if finite is not None:
        v = np.where(finite[..., i] & finite[..., i + 1], v, 0.0)
    return v


def _running_sum(a, k):
    """Sum over the window [i − k, i + k] along the last axis (truncated at the ends), by cumulative sums."""
    c = np.cumsum(np.concatenate([np.zeros(a.shape[:-1] + (1,)), a], axis=-1), axis=-1)
    n = a.shape[-1]
    hi = np.minimum(np.arange(n) + k + 1, n)
    lo = np.maximum(np.arange(n) - k, 0)
    return c[..., hi] - c[..., lo]


# ---------------------------------------------------------------------------------------------------------------
# sector statistics kernel (NumPy twin: tests/reference.py, sector_statistics_reference)
# ---------------------------------------------------------------------------------------------------------------
#: Share of a disc's largest excess bin above which a neighbouring bin still belongs to the disc (``bragg_q``).
DISC_EDGE_SHARE = 0.1


@njit(cache=True, inline="always")
def _excess(mv, sv, medv, n_sigma):
    """Excess pixel counts of one sector bin over the azimuthal median: max(m − med − n_sigma·s, 0)·m/s²."""
    v = np.float64(mv)
    e = np.float64(sv)
    x = v - medv - n_sigma * e
    if not (x > 0.0):  # NaN (no pixels, no median) counts as no excess
        return 0.0
    n = v / (e * e) if e > 0.0 else 0.0
    return x * n


def _sorting_network(n: int) -> np.ndarray:
    """Comparators (i, j), i < j, of Batcher's odd–even merge sort of n values (n padded to a power of two: the
    padding rows hold +inf and stay last), shape (n_comparators, 2) int64 — 191 for 32 values."""
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@njit(cache=True, inline="always")
def _sort_columns(w, net, n_q):
    """Sort every column of w (rows = values, n_q columns) ascending with the comparator network ``net``: each
    comparator is a min/max over a whole row pair, which vectorises across the Q bins."""
    for c in range(net.shape[0]):
        i = net[c, 0]
        j = net[c, 1]
        for k in range(n_q):
            a = w[i, k]
            b = w[j, k]
            w[i, k] = min(a, b)
            w[j, k] = max(a, b)


@njit(parallel=True, cache=True)
def _k_sector_stats(m, s, q, w0, w1, n_sigma, net, counts, npx_tot, med, mx, noise, mu, sd, frac, qlo, qhi, cutf):
    """Per pixel p (m, s: (P, n_phi, n_q) sector means and Poisson standard errors) and bin k, over the finite
    sectors: counts = Σ m·n (n = m/s² pixels, 0 where s <= 0), npx_tot = Σ n, med / mx = median / max of m,
    noise = median of s, mu / sd = mean / population std of m (NaN without a finite sector); then the Bragg
    excess e = max(m − med − n_sigma·s, 0)·n over bins [w0, w1): frac = Σ e / Σ counts (0 when no counts); in
    the sector with the largest Σ e (the first on ties), the run of bins around its largest e (the first on ties)
    whose e exceeds DISC_EDGE_SHARE of that largest: qlo, qhi = the Q of its first and last bin (NaN when it has
    none), cutf = +1 when only its upper end and −1 when only its lower end meets the window's end or a bin
    without pixels (the disc is cut there), else 0. Float64
    arithmetic, sums in sector order; medians and maxima from the sorted finite values (comparator network
    ``net`` of _sorting_network(n_phi), non-finite values as +inf sorted last)."""
    n_pix, n_phi, n_q = m.shape
    n_rows = 1
    while n_rows < n_phi:
        n_rows *= 2
    n_blocks = min(n_pix, 64)
    for blk in prange(n_blocks):
        wm = np.empty((n_rows, n_q))
        ws = np.empty((n_rows, n_q))
        c = np.empty(n_q)
        nt = np.empty(n_q)
        sm = np.empty(n_q)
        d2 = np.empty(n_q)
        fm = np.empty(n_q, np.int64)
        fs = np.empty(n_q, np.int64)
        for p in range(blk * n_pix // n_blocks, (blk + 1) * n_pix // n_blocks):
            c[:] = 0.0
            nt[:] = 0.0
            sm[:] = 0.0
            d2[:] = 0.0
            fm[:] = 0
            fs[:] = 0
            for a in range(n_phi):
                for k in range(n_q):
                    v = np.float64(m[p, a, k])
                    e = np.float64(s[p, a, k])
                    okv = v - v == 0.0  # finite
                    oke = e - e == 0.0
                    ws[a, k] = e if oke else np.inf
                    fs[k] += oke
                    wm[a, k] = v if okv else np.inf
                    if okv:
                        fm[k] += 1
                        n = v / (e * e) if e > 0.0 else 0.0
                        x = v * n
                        if x == x:
                            c[k] += x
                        if n == n:
                            nt[k] += n
                        sm[k] += v
            for a in range(n_phi, n_rows):
                for k in range(n_q):
                    wm[a, k] = np.inf
                    ws[a, k] = np.inf
            for k in range(n_q):
                mu[p, k] = sm[k] / fm[k] if fm[k] > 0 else np.nan
            for a in range(n_phi):
                for k in range(n_q):
                    v = wm[a, k]
                    if v < np.inf:
                        d2[k] += (v - mu[p, k]) * (v - mu[p, k])
            _sort_columns(wm, net, n_q)
            _sort_columns(ws, net, n_q)
            for k in range(n_q):
                counts[p, k] = c[k]
                npx_tot[p, k] = nt[k]
                h = fs[k]
                noise[p, k] = 0.5 * (ws[(h - 1) // 2, k] + ws[h // 2, k]) if h > 0 else np.nan
                h = fm[k]
                if h > 0:
                    med[p, k] = 0.5 * (wm[(h - 1) // 2, k] + wm[h // 2, k])
                    mx[p, k] = wm[h - 1, k]
                    sd[p, k] = math.sqrt(d2[k] / h)
                else:
                    med[p, k] = np.nan
                    mx[p, k] = np.nan
                    sd[p, k] = np.nan
            tot = 0.0
            for k in range(w0, w1):
                tot += counts[p, k]
            best = -1.0
            ib = 0
            allper = 0.0
            for a in range(n_phi):
                per = 0.0
                for k in range(w0, w1):
                    per += _excess(m[p, a, k], s[p, a, k], med[p, k], n_sigma)
                allper += per
                if per > best:
                    best = per
                    ib = a
            frac[p] = allper / tot if tot > 0.0 else 0.0
            # the disc's radial extent in that sector: the run of bins around its largest excess above
            # DISC_EDGE_SHARE of it; Q = the run's midpoint
            kb = w0
            top = 0.0
            for k in range(w0, w1):
                ex = _excess(m[p, ib, k], s[p, ib, k], med[p, k], n_sigma)
                if ex > top:
                    top = ex
                    kb = k
            if top > 0.0:
                cut = DISC_EDGE_SHARE * top
                lo = kb
                while lo > w0 and _excess(m[p, ib, lo - 1], s[p, ib, lo - 1], med[p, lo - 1], n_sigma) > cut:
                    lo -= 1
                hi = kb
                while hi < w1 - 1 and _excess(m[p, ib, hi + 1], s[p, ib, hi + 1], med[p, hi + 1], n_sigma) > cut:
                    hi += 1
                qlo[p] = q[lo]
                qhi[p] = q[hi]
                # the run ends at the window or where the sector has no pixels: the disc is cut there
                top_cut = hi == w1 - 1 or not (m[p, ib, hi + 1] - m[p, ib, hi + 1] == 0.0)
                low_cut = lo == w0 or not (m[p, ib, lo - 1] - m[p, ib, lo - 1] == 0.0)
                cutf[p] = 1.0 if top_cut and not low_cut else (-1.0 if low_cut and not top_cut else 0.0)
            else:
                qlo[p] = np.nan
                qhi[p] = np.nan
                cutf[p] = 0.0


def _sector_statistics(q, m, s, window, n_sigma):
    """Per-pixel statistics over the sectors of sector profiles m, s (sy, sx, n_phi, n_q) by _k_sector_stats:
    dict of (sy, sx, n_q) arrays ``counts``, ``pixels``, ``median``, ``max``, ``noise``, ``mean``, ``std`` and
    (sy, sx) arrays ``bragg``, ``bragg_q`` (window [Å⁻¹] = the Bragg-disc window)."""
    sy, sx, n_phi, n_q = m.shape
    if m.dtype not in (np.float32, np.float64):
        m = m.astype(np.float64)
    if s.dtype != m.dtype:
        s = s.astype(m.dtype)
    mf = np.ascontiguousarray(m).reshape(sy * sx, n_phi, n_q)
    sf = np.ascontiguousarray(s).reshape(sy * sx, n_phi, n_q)
    w = np.flatnonzero((q >= window[0]) & (q <= window[1]))
    w0, w1 = (int(w[0]), int(w[-1]) + 1) if w.size else (0, 0)
    names = ("counts", "pixels", "median", "max", "noise", "mean", "std")
    per_bin = [np.empty((sy * sx, n_q)) for _ in names]
    frac, qlo, qhi, cutf = (np.empty(sy * sx) for _ in range(4))
    net = _sorting_network(n_phi)
    qf = np.ascontiguousarray(q, dtype=np.float64)
    _k_sector_stats(mf, sf, qf, w0, w1, float(n_sigma), net, *per_bin, frac, qlo, qhi, cutf)
    out = {k: v.reshape(sy, sx, n_q) for k, v in zip(names, per_bin)}
    out["bragg"] = frac.reshape(sy, sx)
    out["bragg_q"] = _disc_position(qlo, qhi, cutf, frac, float(np.median(np.diff(qf))) if q.size > 1 else 0.0)
    out["bragg_q"] = out["bragg_q"].reshape(sy, sx)
    return out


#: Smallest Bragg fraction of a pixel whose whole disc run measures the scan's disc radius (``bragg_q``).
DISC_RADIUS_MIN_BRAGG = 0.01


def _disc_position(qlo, qhi, cutf, frac, dq):
    """|g| [Å⁻¹] of each pixel's brightest disc from its radial run [qlo, qhi] (bin centres, bin width dq): the
    midpoint of a whole run; a run cut at one end (cutf ±1) is placed one disc radius from its other edge, the
    radius being the median half-width (qhi − qlo + dq)/2 of the whole runs of pixels with Bragg fraction
    ≥ DISC_RADIUS_MIN_BRAGG (at least 5 of them; otherwise the midpoint)."""
    mid = 0.5 * (qlo + qhi)
    whole = (cutf == 0) & np.isfinite(qlo) & (frac >= DISC_RADIUS_MIN_BRAGG)
    if np.count_nonzero(whole) < 5:
        return mid
    r = float(np.median(0.5 * (qhi[whole] - qlo[whole] + dq)))
    out = np.where(cutf > 0, qlo - 0.5 * dq + r, mid)
    return np.where(cutf < 0, qhi + 0.5 * dq - r, out)


def _band(q, a, lo, hi):
    sel = (q >= lo) & (q <= hi)
    v = a[..., sel]
    f = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(f, v, 0.0).sum(-1) / f.sum(-1)


def features(
    sector_q,
    sector_mean,
    sector_sem,
    *,
    profiles=None,
    peak_map=None,
    q_direct: float = 0.15,
    q_scatter_max: float = 0.64,
    ring_halfwidth: int = 4,
    bragg_window: tuple[float, float] = (0.2, 0.9),
    n_sigma: float = 2.0,
    high_q_band: tuple[float, float] = (0.55, 0.62),
    low_q_band: tuple[float, float] = (0.22, 0.30),
) -> Features:
    """Classification features from sector profiles (and optionally isotropic profiles and a peak map).

    Parameters
    ----------
    sector_q : ndarray (n_q,)  [Å⁻¹]
    sector_mean, sector_sem : ndarray (sy, sx, n_phi, n_q)  [counts per pixel]
        From ``fitting.profiles.sector_profiles`` with a plan that starts at Q = 0 (the direct beam included),
        so that the scattered fraction can be measured.
    profiles : fitting.profiles.ScanProfiles or None
        Isotropic profiles; supplies the total counts when given.
    peak_map : fitting.peaks.PeakMap or None
        SRO peak map (position in Å⁻¹); None leaves ``sro_position`` NaN.
    q_direct : float  [Å⁻¹]
        Q separating the direct beam from scattered signal (≈ 1.3·α/λ).
    q_scatter_max : float  [Å⁻¹]
        Upper end of the Q range of the scattered fraction (a detector reaching less measures it to its edge).
    ring_halfwidth : int  [bins]
        Half-width of the running mean used to find sharp rings.
    bragg_window : (float, float)  [Å⁻¹]
        Q window of the Bragg-disc features.
    n_sigma : float
        Noise margin (Poisson standard errors) subtracted from each sector's excess over the median.
    high_q_band, low_q_band : (float, float)  [Å⁻¹]
        Bands of the ``high_q`` ratio.

    Returns
    -------
    Features
    """
    q = np.asarray(sector_q, dtype=float)
    m = np.asarray(sector_mean)
    s = np.asarray(sector_sem)
    if m.dtype.kind != "f":
        m = m.astype(np.float64)
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    if m.ndim != 4 or m.shape != s.shape or m.shape[-1] != q.size:
        raise ValueError(
            f"sector_mean/sector_sem shapes {m.shape}/{s.shape}: expected (sy, sx, n_phi, n_q) with n_q={q.size}"
        )
    n_phi = m.shape[2]
    sy, sx = m.shape[:2]
    st = _sector_statistics(q, m, s, bragg_window, n_sigma)
    counts, med, mx, noise = st["counts"], st["median"], st["max"], st["noise"]
    total = np.nansum(counts, axis=-1)
    inside = q < q_scatter_max  # a fixed Q range: the fraction does not grow with the detector's reach
    with np.errstate(invalid="ignore", divide="ignore"):
        t_in = np.nansum(counts[..., inside], axis=-1)
        scattered = np.where(t_in > 0, np.nansum(counts[..., inside & (q >= q_direct)], axis=-1) / t_in, 0.0)
        z = (mx - med) / np.sqrt(noise**2 + (0.05 * med) ** 2)
    measured = np.isfinite(med)  # bins with at least one pixel in this pattern (inside the detector)
    z = np.where(np.isfinite(z), z, 0.0)
    zs = z.copy()
    zs[..., 1:-1] = (z[..., :-2] + z[..., 1:-1] + z[..., 2:]) / 3.0
    # a reflection outside the measured Q range is no evidence (0), never an extrapolation
    spot = {ph: np.max([_interp_last(q, zs, r, measured) for r in refl], axis=0) for ph, refl in REFLECTIONS.items()}
    band = (q >= 0.15) & (q <= 0.75)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = st["std"][..., band] / st["mean"][..., band]
        rel_noise = noise[..., band] / med[..., band]
        d = rel - rel_noise
        aniso = np.where(np.isfinite(d), d, 0.0).sum(-1) / np.maximum(np.isfinite(d).sum(-1), 1)
    # sharp isotropic rings
    iso = med
    k = int(ring_halfwidth)
    fin = np.where(np.isfinite(iso), iso, 0.0)
    wts = np.isfinite(iso).astype(float)
    num = _running_sum(fin, k)
    den = _running_sum(wts, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = num / den
        rz = (iso - smooth) / (noise / math.sqrt(n_phi))
    rz = np.where(np.isfinite(rz) & (noise > 0), rz, 0.0)  # no counts in the median sector → no evidence
    inside = [r for r in REFLECTIONS["li2o"] if q[0] <= r <= q[-1]]
    ring = np.mean([_interp_last(q, rz, r, measured) for r in inside], axis=0) if inside else np.zeros((sy, sx))
    # the strongest sharp isotropic ring anywhere in the Bragg window, whatever its phase: narrow (≥ 10 % above
    # its ±ring_halfwidth running mean — an SRO hump is a few % at most) and significant (rz)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(smooth > 0, iso / smooth - 1.0, 0.0)
    win = (q >= bragg_window[0]) & (q <= bragg_window[1])
    rs = np.where(win & (rel >= 0.1) & measured, rz, 0.0)
    kq = np.argmax(rs, axis=-1)
    ring_max = np.take_along_axis(rs, kq[..., None], axis=-1)[..., 0]
    ring_q = np.where(ring_max > 0, q[kq], np.nan)
    # second SRO peak of Type 1 from the isotropic (median) profile, as I·Q
    iq = iso * q
    with np.errstate(invalid="ignore", divide="ignore"):
        second = _band(q, iq, 0.57, 0.63) / (0.5 * (_band(q, iq, 0.47, 0.53) + _band(q, iq, 0.67, 0.73))) - 1.0
    bragg, bragg_q = st["bragg"], st["bragg_q"]
    with np.errstate(invalid="ignore", divide="ignore"):
        # azimuthal mean (all counts / all pixels) — defined at low dose, where the sector median is 0
        npx_tot = st["pixels"]
        iq_mean = np.where(npx_tot > 0, counts / np.where(npx_tot > 0, npx_tot, 1.0), np.nan) * q
        high = _band(q, iq_mean, *high_q_band) / _band(q, iq_mean, *low_q_band)
        if profiles is not None:  # the isotropic profile itself (exact pixel counts per bin)
            pq = np.asarray(profiles.q, dtype=float)
            ip = np.asarray(profiles.intensity, dtype=float) * pq
            if ip.shape[:2] == m.shape[:2]:
                high = _band(pq, ip, *high_q_band) / _band(pq, ip, *low_q_band)
    # mean counts per pixel inside the direct beam over those outside: ≫ 1 for any pattern with a direct beam
    # (≈ 200 for the SEI at 2 mrad, ≈ 6 for thick Cu), ≈ 1 for a flat (saturated, 1-bit all-ones) frame, NaN blank
    with np.errstate(invalid="ignore", divide="ignore"):
        inner, outer = q < q_direct, q >= q_direct
        c_in = np.nansum(counts[..., inner], axis=-1) / np.nansum(npx_tot[..., inner], axis=-1)
        c_out = np.nansum(counts[..., outer], axis=-1) / np.nansum(npx_tot[..., outer], axis=-1)
        contrast = np.where(c_out > 0, c_in / c_out, np.where(c_in > 0, np.inf, np.nan))
    if profiles is not None:
        total = np.asarray(profiles.total, dtype=float)
    if peak_map is not None:
        pos, ok = np.asarray(peak_map.position), np.asarray(peak_map.ok)
        if pos.shape != (sy, sx):
            raise ValueError(f"peak_map shape {pos.shape} does not match the sector profiles' scan shape {(sy, sx)}")
    else:
        pos, ok = np.full((sy, sx), np.nan), np.zeros((sy, sx), dtype=bool)
    return Features(
        scattered=scattered,
        spot_z=spot,
        anisotropy=aniso,
        ring_z=ring,
        sro_position=pos,
        sro_ok=ok,
        second_peak=np.where(np.isfinite(second), second, 0.0),
        total=total,
        bragg=bragg,
        bragg_q=bragg_q,
        high_q=np.where(np.isfinite(high), high, 0.0),
        ring_max=ring_max,
        ring_q=ring_q,
        beam_contrast=contrast,
        q_measured=(float(q[0]), float(q[-1])),
    )


#: Version of the rule set and of :class:`ClassifyRules`' fields; a rules file of another version is refused.
RULES_VERSION = 3


@dataclass(frozen=True, kw_only=True)
class ClassifyRules:
    """Every threshold of :func:`classify` in one versioned configuration (rules of the module docstring).

    The defaults were tuned on synthetic scenes (``simkit.synth`` scans of the study's geometry with the project's
    pattern libraries, 10⁴–10⁶ e/pattern, 2 mrad probe, 60 nm lamella, 256² detector at 0.005 Å⁻¹/px; version 3
    re-checked at the default 0.0065 Å⁻¹/px, which reaches 0.83 Å⁻¹: ``lif_level`` ½ → 0.6, ``bragg_q`` the disc
    midpoint instead of its centroid, ``metal_tol`` 0.1 → 0.05, Li 211 and Cu 220 known, ``scattered`` over
    Q < 0.64 Å⁻¹); they are
    not fitted to measured data. Scale ``dense_min`` with the lamella thickness and re-check ``vacuum_max``,
    ``crystal_min`` and ``lif_min`` for another dose, detector or probe. Save and load with :meth:`to_dict` /
    :meth:`from_dict` / :meth:`from_json` (``sei-send analyze --rules rules.json``).

    Attributes
    ----------
    version : int
        Rule-set version (:data:`RULES_VERSION`).
    vacuum_max : float
        Largest scattered fraction of vacuum/very thin pixels.
    ring_min : float  [noise units]
        Smallest sharp-ring significance of Li₂O rings (and of an unknown sharp ring → ``unassigned``).
    crystal_min : float
        Smallest Bragg fraction of a crystal (metal grain or Li₂O) whatever the disc position (above the LiF
        spots of Type 2 at any dose up to 10⁶ e/pattern).
    weak_crystal_min : float
        Smallest Bragg fraction of a crystal whose disc centroid is not at a LiF reflection.
    lif_min : float
        Smallest Bragg fraction of the LiF spots of SEI Type 2.
    lif_tol : float  [Å⁻¹]
        Largest distance of the disc centroid from a LiF reflection (200, 220) for Type 2; also the largest
        distance of a sharp ring from a known reflection before it counts as an unknown phase.
    high_q_split : float
        ``high_q`` separating SEI Type 1 (above) from electrolyte (below).
    dense_min : float
        Smallest scattered fraction of a pixel without Bragg discs that is called **Cu**: Cu (Z = 29) scatters
        0.24–0.86 of the beam in the 60 nm simkit lamella and 0.33 on the analytic scans, the light-element SEI
        and electrolyte 0.10–0.19 and Li metal 0.09–0.39.
    lif_radius : int  [scan pixels]
        Neighbourhood radius of the LiF evidence for Type 2 (0 switches it off).
    lif_share : float
        Share of the amorphous pixels of the (2·``lif_radius`` + 1)² neighbourhood that must show LiF discs for an
        amorphous pixel without discs of its own to be **SEI Type 2** rather than Type 1.
    minority_ratio : float
        A Li/Cu pixel whose Bragg fraction and scattered fraction are both below this share of its phase's scan
        medians is an amorphous pixel grazing a grain (0 switches it off).
    metal_tol : float  [Å⁻¹]
        A Li/Cu pixel whose disc position is within this of both a Li and a Cu reflection moves to the other metal
        when its scattered fraction fits that phase's scan median (≤ 3 MAD) and not its own (0 switches it off).
    lif_sigma : float  [scan pixels]
        Gaussian radius over which the frequency of LiF spots among SEI pixels is measured (0 switches it off).
    lif_level : float
        SEI pixels whose LiF-spot frequency reaches this share of the scan's 95th percentile (itself ≥ 0.1, from
        ≥ 5 pixels with spots) are **SEI Type 2**.
    assign_tol : float  [Å⁻¹]
        A crystal (Bragg discs above ``crystal_min``/``weak_crystal_min``) whose disc centroid lies farther than
        this from every known reflection (Li, Cu, Li₂O, LiF) is **unassigned** (an unknown phase), not the
        nearest known one. Discs of 2 mrad have a radius of 0.10 Å⁻¹, overlapping ones put the centroid up to
        ≈ 0.05 Å⁻¹ off (Cu 111 read at 0.436).
    min_beam_contrast : float
        Smallest mean counts per pixel inside the direct beam over those outside; a frame below it (flat: a
        saturated or 1-bit all-ones frame, or a beam stop over the direct beam) and a frame without counts are
        **unassigned**, with a warning.
    """

    version: int = RULES_VERSION
    vacuum_max: float = 0.03
    ring_min: float = 6.0
    crystal_min: float = 0.3
    weak_crystal_min: float = 0.025
    lif_min: float = 0.004
    lif_tol: float = 0.05
    high_q_split: float = 0.55
    dense_min: float = 0.22
    lif_radius: int = 1
    lif_share: float = 0.5
    minority_ratio: float = 0.5
    metal_tol: float = 0.05
    lif_sigma: float = 2.0
    lif_level: float = 0.6
    assign_tol: float = 0.06
    min_beam_contrast: float = 1.5

    def __post_init__(self):
        if self.version != RULES_VERSION:
            raise ValueError(
                f"ClassifyRules version={self.version!r}: this fitting.classify implements version {RULES_VERSION}; "
                "re-derive the thresholds for this rule set (see the ClassifyRules docstring)"
            )
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "lif_radius":
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"ClassifyRules lif_radius={v!r}: a non-negative whole number of scan pixels")
            elif f.name != "version" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise ValueError(f"ClassifyRules {f.name}={v!r}: must be a non-negative number")

    def to_dict(self) -> dict:
        """The rules as a JSON-ready dict (with ``version``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifyRules:
        """Rules from a dict; unknown keys raise (a typo would otherwise silently keep a default)."""
        if not isinstance(d, dict):
            raise ValueError(f"rules: expected a JSON object of thresholds, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"rules: unknown field(s) {bad}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path) -> ClassifyRules:
        """Rules from a JSON file (keys = attribute names; missing keys keep their defaults)."""
        import json

        try:
            from pathlib import Path

            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"rules file {path}: not valid JSON ({e})") from None
        return cls.from_dict(d)


def _blank_flat(feats: Features, rules: ClassifyRules) -> tuple[np.ndarray, np.ndarray]:
    """Blank frames (no counts) and flat ones: no direct beam above ``min_beam_contrast`` *and* no Bragg discs
    (a thick crystal, e.g. 60 nm of Cu, sends the direct beam into discs as bright as itself: contrast ≈ 1.1 with
    ``bragg`` ≫ ``weak_crystal_min``; it is a crystal, not a flat frame)."""
    c = feats.beam_contrast
    blank = ~(np.nan_to_num(feats.total) > 0) | ~np.isfinite(c) & ~np.isposinf(c)
    discs = np.nan_to_num(feats.bragg) >= rules.weak_crystal_min
    flat = ~blank & (c < rules.min_beam_contrast) & ~discs
    return blank, flat


def frame_warnings(feats: Features, rules: ClassifyRules | None = None) -> list[str]:
    """Warnings about patterns the rules cannot classify: blank (no counts) and flat frames (no direct beam:
    saturated, 1-bit all-ones, or the beam behind a beam stop). Such pixels are **unassigned**."""
    rules = ClassifyRules() if rules is None else rules
    blank, flat = _blank_flat(feats, rules)
    out = []
    if blank.any():
        out.append(f"{int(blank.sum())} of {blank.size} patterns are blank (no counts): unassigned")
    if flat.any():
        out.append(
            f"{int(flat.sum())} of {flat.size} patterns have no direct beam (inside/outside counts per pixel < "
            f"{rules.min_beam_contrast:g}: saturated, flat or beam-stopped frames): unassigned"
        )
    return out


def classify(feats: Features, rules: ClassifyRules | None = None, *, warn: bool = True, **overrides) -> np.ndarray:
    """Class map from :func:`features` by the documented rules (module docstring).

    Parameters
    ----------
    feats : Features
    rules : ClassifyRules or None
        Thresholds (default ``ClassifyRules()``, tuned on synthetic scenes).
    warn : bool
        Emit a ``UserWarning`` for blank or flat frames (:func:`frame_warnings`).
    **overrides
        Single thresholds replacing those of ``rules`` (attribute names of :class:`ClassifyRules`).

    Returns
    -------
    ndarray of int (sy, sx)
        Index into :data:`CLASSES` (``unassigned`` for patterns that match no phase or cannot be classified).
    """
    if not isinstance(feats, Features):
        raise TypeError(f"feats={type(feats).__name__}: expected fitting.classify.Features (from features())")
    rules = ClassifyRules() if rules is None else rules
    if not isinstance(rules, ClassifyRules):
        raise TypeError(f"rules={type(rules).__name__}: expected fitting.classify.ClassifyRules")
    if overrides:
        try:
            rules = replace(rules, **overrides)
        except TypeError as e:
            raise TypeError(f"classify: {e}; thresholds are the attributes of ClassifyRules") from None
    code = {c: i for i, c in enumerate(CLASSES)}
    out = _classify_bragg(feats, code, rules)
    msgs = frame_warnings(feats, rules)
    if msgs:
        blank, flat = _blank_flat(feats, rules)
        out = np.where(blank | flat, code["unassigned"], out)
        if warn:
            for m in msgs:
                warnings.warn(m, UserWarning, stacklevel=2)
    return out


def _lif_density_rule(out, lif, crystal, feats, code, sigma, level, ring_min, dense_min):
    """SEI pixels where LiF spots are frequent around them → Type 2 (see rule 5 of the module docstring)."""
    from scipy.ndimage import gaussian_filter

    t1, t2 = code["sei_type1"], code["sei_type2"]
    sei = np.isin(out, (t1, t2)) & ~crystal & (feats.scattered < dense_min) & ~(feats.ring_z >= ring_min)
    evidence = lif & sei
    if np.count_nonzero(evidence) < 5:
        return out
    num = gaussian_filter(evidence.astype(float), sigma, mode="nearest")
    den = gaussian_filter(sei.astype(float), sigma, mode="nearest")
    density = np.where(sei, num / np.maximum(den, 1e-12), 0.0)
    ref = float(np.percentile(density[sei], 95))
    if ref < 0.1:  # a few scattered false detections, not a LiF-bearing layer
        return out
    return np.where(sei & (density >= level * ref), t2, out)


def _classify_bragg(feats, code, rules):
    """Rules of the module docstring (thresholds from ``rules``, a ClassifyRules)."""
    bragg = np.where(np.isfinite(feats.bragg), feats.bragg, 0.0)
    bq = feats.bragg_q
    phases = ("li", "cu", "li2o")
    with np.errstate(invalid="ignore"):
        dist = np.stack([np.min([np.abs(bq - r) for r in REFLECTIONS[p]], axis=0) for p in phases], axis=-1)
        dist = np.where(np.isfinite(dist), dist, np.inf)
        near_lif = np.min([np.abs(bq - r) for r in REFLECTIONS["lif"]], axis=0) <= rules.lif_tol
    crystal_class = np.array([code[_PHASE_CLASS[p]] for p in phases])[np.argmin(dist, axis=-1)]
    crystal = (bragg >= rules.crystal_min) | ((bragg >= rules.weak_crystal_min) & ~near_lif)
    scattered = np.where(np.isfinite(feats.scattered), feats.scattered, 0.0)
    if rules.metal_tol and rules.metal_tol > 0:
        li_c, cu_c = code["li_metal"], code["cu"]
        li_m, cu_m = crystal & (crystal_class == li_c), crystal & (crystal_class == cu_c)
        cu_ref = cu_m | (~crystal & (scattered >= rules.dense_min))  # Cu by its discs or by its scattering (rule 3)
        if np.count_nonzero(li_m) >= 10 and np.count_nonzero(cu_ref) >= 10:
            s_li, s_cu = float(np.median(scattered[li_m])), float(np.median(scattered[cu_ref]))
            if s_li > 0 and s_cu > 0:
                # distance in units of each phase's own spread (MAD, at least 2 % of its median): grains of one
                # metal scatter alike (Li 0.393–0.395 on the full bottom scan) or vary with orientation (Cu 0.32–0.86)
                w_li = max(1.4826 * float(np.median(np.abs(scattered[li_m] - s_li))), 0.02 * s_li)
                w_cu = max(1.4826 * float(np.median(np.abs(scattered[cu_ref] - s_cu))), 0.02 * s_cu)
                both = (dist[..., phases.index("li")] <= rules.metal_tol) & (
                    dist[..., phases.index("cu")] <= rules.metal_tol
                )
                d_li, d_cu = np.abs(scattered - s_li) / w_li, np.abs(scattered - s_cu) / w_cu
                # moved only when its scattering fits the other phase (≤ 3 spreads) and not its own (> 3): a grain
                # unlike both (a Cu orientation at 0.86) keeps its nearest reflection
                to_cu = both & li_m & (d_cu <= 3.0) & (d_li > 3.0)
                to_li = both & cu_m & (d_li <= 3.0) & (d_cu > 3.0)
                crystal_class = np.where(to_cu, cu_c, np.where(to_li, li_c, crystal_class))
    if rules.minority_ratio and rules.minority_ratio > 0:
        for phase in ("li_metal", "cu"):
            members = crystal & (crystal_class == code[phase])
            if np.count_nonzero(members) < 10:
                continue
            minority = (bragg < rules.minority_ratio * np.median(bragg[members])) & (
                scattered < rules.minority_ratio * np.median(scattered[members])
            )
            crystal &= ~(members & minority)
    out = np.where(feats.high_q >= rules.high_q_split, code["sei_type1"], code["electrolyte"])
    lif = (bragg >= rules.lif_min) & near_lif
    out = np.where(lif, code["sei_type2"], out)
    if rules.lif_radius and out.ndim == 2 and min(out.shape) > 1:
        # a Type 2 column holds few LiF crystallites, often none in Bragg condition: borrow the neighbours' evidence
        from scipy.ndimage import uniform_filter

        amorph = np.isin(out, (code["sei_type1"], code["sei_type2"], code["electrolyte"])) & ~crystal
        size = 2 * int(rules.lif_radius) + 1
        num = uniform_filter((lif & amorph).astype(float), size, mode="nearest")
        den = uniform_filter(amorph.astype(float), size, mode="nearest")
        share = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
        out = np.where(amorph & (out != code["sei_type2"]) & (share >= rules.lif_share), code["sei_type2"], out)
    if rules.lif_sigma and rules.lif_sigma > 0 and out.ndim == 2 and min(out.shape) > 1:
        out = _lif_density_rule(
            out, lif, crystal, feats, code, rules.lif_sigma, rules.lif_level, rules.ring_min, rules.dense_min
        )
    # an isotropic sharp ring at no known reflection: a phase the rules do not know
    known = np.array([r for refl in REFLECTIONS.values() for r in refl])
    with np.errstate(invalid="ignore"):
        ring_d = np.min(np.abs(feats.ring_q[..., None] - known), axis=-1)
    unknown_ring = (feats.ring_max >= rules.ring_min) & (ring_d > rules.lif_tol)
    out = np.where(unknown_ring, code["unassigned"], out)
    out = np.where(feats.ring_z >= rules.ring_min, code["li2o"], out)
    out = np.where(feats.scattered >= rules.dense_min, code["cu"], out)  # a Cu grain with no disc on the detector
    # discs far from every known reflection (an unknown crystal) are no evidence for the nearest known phase
    with np.errstate(invalid="ignore"):
        d_any = np.min(np.abs(bq[..., None] - known), axis=-1)
    crystal_class = np.where(np.isfinite(d_any) & (d_any > rules.assign_tol), code["unassigned"], crystal_class)
    out = np.where(crystal, crystal_class, out)
    out = np.where(feats.scattered < rules.vacuum_max, code["vacuum"], out)
    return out


# ---------------------------------------------------------------------------------------------------------------
def cluster_profiles(
    profiles,
    n_clusters: int,
    *,
    method: str = "kmeans",
    q_range: tuple[float, float] | None = None,
    rng=None,
    n_iter: int = 300,
):
    """Unsupervised grouping of normalised I·Q profiles.

    Parameters
    ----------
    profiles : ndarray (..., n_q) or fitting.profiles.ScanProfiles
        I·Q profiles (``ScanProfiles.iq`` is used for a ScanProfiles); NaN bins are dropped for all pixels.
    n_clusters : int
        Number of clusters (k-means) or components (NMF).
    method : {"kmeans", "nmf"}
        ``kmeans``: ``scipy.cluster.vq.kmeans2`` (k-means++) on profiles normalised to unit mean;
        ``nmf``: non-negative matrix factorisation by multiplicative updates (Lee & Seung 2001), label =
        dominant component.
    q_range : tuple or None  [Å⁻¹]
        Q range used (requires a ScanProfiles to know Q).
    rng : numpy.random.Generator, int or None
    n_iter : int
        NMF iterations.

    Returns
    -------
    labels : ndarray of int (...)
    centroids : ndarray (n_clusters, n_used_q)
        Cluster centres (k-means) or NMF components (normalised profiles).
    """
    rng = np.random.default_rng(rng)
    if hasattr(profiles, "iq"):
        P, q = np.asarray(profiles.iq, dtype=float), profiles.q
    else:
        P, q = np.asarray(profiles, dtype=float), None
    if q_range is not None:
        if q is None:
            raise ValueError("q_range needs a ScanProfiles (the bin centres are not known for a bare array)")
        P = P[..., (q >= q_range[0]) & (q <= q_range[1])]
    lead = P.shape[:-1]
    X = P.reshape(-1, P.shape[-1])
    X = X[:, np.all(np.isfinite(X), axis=0)]
    if X.shape[1] < 2:
        raise ValueError("profiles: fewer than 2 Q bins are finite for every pixel")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= len(X):
        raise ValueError(f"n_clusters={n_clusters!r}: between 1 and the number of profiles ({len(X)})")
    scale = np.abs(X).mean(axis=1, keepdims=True)
    Xn = X / np.where(scale > 0, scale, 1.0)
    if method == "kmeans":
        from scipy.cluster.vq import kmeans2

        cent, lab = kmeans2(Xn, int(n_clusters), minit="++", seed=rng)
        return lab.reshape(lead), cent
    if method == "nmf":
        V = np.maximum(Xn, 0.0)
        k = int(n_clusters)
        W = rng.uniform(0.1, 1.0, (V.shape[0], k))
        H = rng.uniform(0.1, 1.0, (k, V.shape[1]))
        for _ in range(int(n_iter)):
            H *= (W.T @ V) / (W.T @ W @ H + 1e-12)
            W *= (V @ H.T) / (W @ H @ H.T + 1e-12)
        norm = H.mean(axis=1, keepdims=True)
        H = H / np.where(norm > 0, norm, 1.0)
        W = W * norm.T
        return np.argmax(W, axis=1).reshape(lead), H
    raise ValueError(f"method={method!r}: choose 'kmeans' or 'nmf'")


# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, eq=False)
class LayerThickness:
    """Thickness of one class's layer along an axis.

    Attributes
    ----------
    thickness : float  [nm]
        Mean over lines (``method="count"``) or the error-function fit (``"erf"``).
    thickness_err : float  [nm]
        Standard error: over lines, with the ±½-step quantisation per line (step/√12) added in quadrature
        for ``"count"``; from the fit covariance for ``"erf"``.
    per_line : ndarray  [nm]
        Pixels of the class per line × step (``"count"``).
    std : float  [nm]
        Spread between lines (interface roughness).
    method : str
    """

    thickness: float
    thickness_err: float
    per_line: np.ndarray
    std: float
    method: str


def layer_thickness(classes, label, *, axis: int, step: float, method: str = "count") -> LayerThickness:
    """Thickness of the layer of class ``label`` along ``axis``.

    Parameters
    ----------
    classes : ndarray of int (sy, sx)
        Class map (indices into :data:`CLASSES`).
    label : int or str
        Class index or name.
    axis : int
        Scan axis across the layer (0 = rows/scan_y, 1 = columns/scan_x).
    step : float  [Å]
        Scan step (``Scan.step``).
    method : {"count", "erf"}
        ``count``: per line (perpendicular to the interface) the number of pixels of the class times the step;
        ``erf``: two error-function edges fitted to the class fraction averaged along the interface
        (``fitting.peaks.erf_layer_fit``).

    Returns
    -------
    LayerThickness
    """
    c = np.asarray(classes)
    if c.ndim != 2:
        raise ValueError(f"classes.shape={c.shape}: expected a 2-D class map (sy, sx)")
    if axis not in (0, 1):
        raise ValueError(f"axis={axis!r}: 0 (scan_y) or 1 (scan_x)")
    if isinstance(label, str):
        if label not in CLASSES:
            raise ValueError(f"label={label!r}: one of {CLASSES}")
        label = CLASSES.index(label)
    step = float(step) if step is not None else float("nan")
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"step={step!r}: the scan step must be a positive length [Å] (load_scan(..., step=...))")
    ind = (c == label).astype(float)
    nm = step / 10.0
    if method == "count":
        per = ind.sum(axis=axis) * nm
        n = per.size
        std = float(per.std(ddof=1)) if n > 1 else 0.0
        err = math.sqrt((std**2 / n if n > 1 else 0.0) + (nm**2 / 12.0) / n)
        return LayerThickness(thickness=float(per.mean()), thickness_err=err, per_line=per, std=std, method=method)
    if method == "erf":
        from fitting.peaks import erf_layer_fit

        prof = ind.mean(axis=1 - axis)
        fit = erf_layer_fit(prof, step)
        per = ind.sum(axis=axis) * nm
        return LayerThickness(
            thickness=fit.thickness, thickness_err=fit.thickness_err, per_line=per, std=float(per.std()), method=method
        )
    raise ValueError(f"method={method!r}: 'count' or 'erf'")
