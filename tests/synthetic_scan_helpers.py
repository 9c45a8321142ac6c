"""A small synthetic SEND-scan generator with known truth, for the fitting tests (until simkit.synth lands).

Every pattern is a Poisson sample of an analytic intensity density in Q-space (Q = 1/d [Å⁻¹]) evaluated at the
pixel centres of an elliptically distorted, descanned detector. Region models (what the study reports):

* direct beam: a disc of radius α/λ (2 mrad at 300 keV → 0.1016 Å⁻¹) holding the unscattered electrons;
* diffuse background ∝ 1/(Q + 0.05)² everywhere outside vacuum;
* ``li``: single-crystal Li [001] — 110 spots at 0.406 Å⁻¹ (cryo) and 200 spots at 0.574 Å⁻¹ — with weak
  Li₂O rings (surface-oxidation artefact);
* ``cu``: Cu [011] — 111 spots at 0.479, 200 spots at 0.553 Å⁻¹;
* ``li2o``: polycrystalline Li₂O rings 111 0.376, 200 0.434 (weak), 220 0.613, 311 0.719 Å⁻¹;
* ``type1``: isotropic SRO rings at ≈ 0.33 (per pixel, given map) and 0.60 Å⁻¹;
* ``type2``: isotropic SRO ring at 0.295 Å⁻¹ plus LiF nanocrystal spots 200 at 0.497 and 220 at 0.702 Å⁻¹
  (random in-plane orientation per pixel);
* ``electrolyte``: isotropic SRO ring at 0.285 Å⁻¹;
* ``vacuum``: direct beam only (0.2 % diffuse).

The truth of the SRO peak position is the maximum of Q·I_iso(Q) of the analytic isotropic density in the
window (found on a 10⁻⁵ Å⁻¹ grid), independent of the code under test.
"""

from __future__ import annotations

import numpy as np

#: Region names in the order of fitting.classify.CLASSES.
REGIONS = ("vacuum", "li", "cu", "li2o", "type1", "type2", "electrolyte")
SCATTERED_FRACTION = {
    "vacuum": 0.002,
    "li": 0.12,
    "cu": 0.45,
    "li2o": 0.25,
    "type1": 0.22,
    "type2": 0.25,
    "electrolyte": 0.18,
}
#: Direct-beam radius of a 2 mrad probe at 300 keV [Å⁻¹] (α/λ, λ = 0.019687 Å).
Q_ALPHA = 2e-3 / 0.019687


def background(q):
    """Diffuse background density (arbitrary units)."""
    return 1.0 / (q + 0.05) ** 2


def _gauss(q, q0, s):
    return np.exp(-0.5 * ((q - q0) / s) ** 2)


def isotropic(q, region, sro=None):
    """Isotropic density I_iso(Q) of a region (arbitrary units, the same for all regions at equal scale)."""
    bg = background(q)
    if region == "vacuum":
        return bg
    if region == "li":
        return bg * (1 + 0.25 * _gauss(q, 0.376, 0.006) + 0.15 * _gauss(q, 0.613, 0.008))
    if region == "cu":
        return bg
    if region == "li2o":
        return bg * (
            1
            + 2.0 * _gauss(q, 0.376, 0.006)
            + 0.1 * _gauss(q, 0.434, 0.006)
            + 1.5 * _gauss(q, 0.613, 0.007)
            + 1.0 * _gauss(q, 0.719, 0.007)
        )
    if region == "type1":
        q0 = 0.33 if sro is None else sro
        return bg + background(q0) * (1.0 * _gauss(q, q0, 0.035)) + background(0.60) * 0.6 * _gauss(q, 0.60, 0.05)
    if region == "type2":
        q0 = 0.295 if sro is None else sro
        return bg + background(q0) * 0.8 * _gauss(q, q0, 0.035)
    if region == "electrolyte":
        q0 = 0.285 if sro is None else sro
        return bg + background(q0) * 0.7 * _gauss(q, q0, 0.04)
    raise ValueError(region)


# spot sets: (Q [Å⁻¹], azimuths relative to the grain orientation [rad], relative height)
_D = np.deg2rad
SPOTS = {
    "li": [(0.406, _D([45, 135, 225, 315]), 60.0), (0.574, _D([0, 90, 180, 270]), 30.0)],
    "cu": [(0.479, _D([54.74, 125.26, 234.74, 305.26]), 40.0), (0.553, _D([0, 180]), 30.0)],
    "type2": [(0.497, _D([0, 90, 180, 270]), 15.0), (0.702, _D([45, 135, 225, 315]), 10.0)],
}


def sro_truth(q0_map, regions_map, q_range=(0.22, 0.42)):
    """Analytic SRO peak position: argmax of Q·I_iso(Q) within ``q_range`` for amorphous pixels; NaN elsewhere."""
    grid = np.arange(q_range[0], q_range[1], 1e-5)
    out = np.full(regions_map.shape, np.nan)
    for idx in np.ndindex(regions_map.shape):
        name = REGIONS[regions_map[idx]]
        if name in ("type1", "type2", "electrolyte"):
            out[idx] = grid[np.argmax(grid * isotropic(grid, name, q0_map[idx]))]
    return out


def layered_weights(scan_shape, boundaries, regions, *, axis=0, roughness=0.0, rng=None):
    """Fractional coverage of each region per probe position for layers stacked along ``axis``.

    Parameters
    ----------
    scan_shape : (sy, sx)
    boundaries : list of float  [scan steps]
        Interface positions between consecutive ``regions`` along ``axis`` (len(regions) − 1 of them);
        position p means the interface lies at coordinate p, pixel i spans [i − ½, i + ½].
    regions : list of str
    roughness : float  [steps]
        Standard deviation of a random interface displacement per line.

    Returns
    -------
    ndarray (sy, sx, len(REGIONS))  fractions summing to 1.
    """
    rng = np.random.default_rng(rng)
    sy, sx = scan_shape
    w = np.zeros((sy, sx, len(REGIONS)))
    n_along, n_across = (sy, sx) if axis == 0 else (sx, sy)
    for j in range(n_across):
        b = np.array(boundaries, float) + (rng.normal(0, roughness, len(boundaries)) if roughness else 0.0)
        lo_edges = np.concatenate([[-np.inf], b])
        hi_edges = np.concatenate([b, [np.inf]])
        for i in range(n_along):
            a0, a1 = i - 0.5, i + 0.5
            for r, lo, hi in zip(regions, lo_edges, hi_edges):
                f = max(0.0, min(a1, hi) - max(a0, lo))
                if f > 0:
                    idx = (i, j) if axis == 0 else (j, i)
                    w[idx + (REGIONS.index(r),)] += f
    return w


def make_scan(
    weights,
    *,
    det_shape=(128, 128),
    pixel_size=0.0125,
    center=None,
    descan=((0.0, 1.5, -0.8), (0.0, -0.6, 1.2)),
    ellipse=(1.0, 0.0),
    electrons=4e4,
    sro_map=None,
    grain_angle=None,
    rng=None,
    dtype=np.uint16,
    noise=True,
    spot_sigma=0.012,
):
    """Synthetic scan.

    Parameters
    ----------
    weights : ndarray (sy, sx, len(REGIONS)) or int ndarray (sy, sx) of region codes
    det_shape : (ny, nx)  [px]
    pixel_size : float  [Å⁻¹/px]
    center : (cy, cx) or None  [px]  mean beam centre (default: detector centre + (0.3, −0.2))
    descan : ((a_y, b_y, c_y), (a_x, b_x, c_x))  [px]
        Centre shift = a + b·u + c·v with u, v ∈ [−1, 1] the scan coordinates along y and x.
    ellipse : (ratio, angle [rad])  simkit.radial convention
    electrons : float  electrons per pattern
    sro_map : ndarray (sy, sx) or None  [Å⁻¹]  SRO ring centre per pixel (default per region)
    grain_angle : dict region → angle [rad] for single-crystal regions (li, cu); default random per region
    rng : seed
    noise : bool  Poisson sampling (False returns the expected counts as float64)
    spot_sigma : float  [Å⁻¹]  Gaussian width of Bragg spots (a 2 mrad probe makes discs of radius 0.10 Å⁻¹;
        the default models sharp spots of a small-convergence probe)

    Returns
    -------
    data : ndarray (sy, sx, ny, nx)
    truth : dict with 'regions' (sy, sx) int, 'weights', 'centers' (sy, sx, 2) [px], 'sro_q0', 'center',
        'pixel_size', 'ellipse'
    """
    rng = np.random.default_rng(rng)
    w = np.asarray(weights)
    if w.ndim == 2:
        codes = w.astype(int)
        w = np.zeros(codes.shape + (len(REGIONS),))
        for r in range(len(REGIONS)):
            w[..., r] = codes == r
    sy, sx = w.shape[:2]
    ny, nx = det_shape
    if center is None:
        center = (ny // 2 + 0.3, nx // 2 - 0.2)
    u, v = np.meshgrid(np.linspace(-1, 1, sy), np.linspace(-1, 1, sx), indexing="ij")
    (ay, by_, cy_), (ax, bx_, cx_) = descan
    centers = np.stack([center[0] + ay + by_ * u + cy_ * v, center[1] + ax + bx_ * u + cx_ * v], axis=-1)
    default_sro = {"type1": 0.33, "type2": 0.295, "electrolyte": 0.285}
    regions = np.argmax(w, axis=-1)
    dflt = np.array([[default_sro.get(REGIONS[r], np.nan) for r in row] for row in regions])
    sro_map = dflt if sro_map is None else np.where(np.isfinite(sro_map), sro_map, dflt)
    if grain_angle is None:
        grain_angle = {"li": rng.uniform(0, np.pi / 2), "cu": rng.uniform(0, np.pi / 2)}
    rho, th = ellipse
    iy, ix = np.mgrid[:ny, :nx].astype(float)
    out = np.empty((sy, sx, ny, nx), dtype=float if not noise else dtype)
    for i in range(sy):
        for j in range(sx):
            dy = iy - centers[i, j, 0]
            dx = ix - centers[i, j, 1]
            uu = (dx * np.cos(th) + dy * np.sin(th)) / rho
            vv = -dx * np.sin(th) + dy * np.cos(th)
            xc = uu * np.cos(th) - vv * np.sin(th)
            yc = uu * np.sin(th) + vv * np.cos(th)
            q = np.hypot(xc, yc) * pixel_size
            qx, qy = xc * pixel_size, yc * pixel_size
            beam = np.clip((Q_ALPHA - q) / pixel_size + 0.5, 0.0, 1.0)
            pat = np.zeros((ny, nx))
            for r, name in enumerate(REGIONS):
                f = w[i, j, r]
                if f <= 0:
                    continue
                sro = sro_map[i, j] if name in default_sro else None
                if sro is not None and not np.isfinite(sro):
                    sro = default_sro[name]
                dens = isotropic(q, name, sro) * (q > 0.5 * Q_ALPHA)
                if name in SPOTS:
                    ang = grain_angle.get(name, None) if name in ("li", "cu") else None
                    if ang is None:
                        ang = rng.uniform(0, np.pi / 2)
                    for qs, phis, h in SPOTS[name]:
                        for p in phis:
                            amp = h if name != "type2" else h * rng.uniform(0.6, 1.4)
                            sx0, sy0 = qs * np.cos(p + ang), qs * np.sin(p + ang)
                            dens = dens + amp * background(qs) * np.exp(
                                -0.5 * ((qx - sx0) ** 2 + (qy - sy0) ** 2) / spot_sigma**2
                            )
                fs = SCATTERED_FRACTION[name]
                pat += f * electrons * ((1 - fs) * beam / beam.sum() + fs * dens / dens.sum())
            out[i, j] = rng.poisson(pat) if noise else pat
    truth = {
        "regions": regions,
        "weights": w,
        "centers": centers,
        "sro_q0": sro_map,
        "center": tuple(center),
        "pixel_size": pixel_size,
        "ellipse": (rho, th),
    }
    return out, truth


def write_emd(path, data, *, step=None, pixel_size=None, energy=None, semiangle=None, chunks=True):
    """Minimal EMD 1.0 writer (emdfile/py4DSTEM layout) used to produce test files."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["emd_group_type"] = "file"
        f.attrs["version_major"] = 1
        f.attrs["version_minor"] = 0
        f.attrs["authoring_program"] = "sei-send tests"
        root = f.create_group("root")
        root.attrs["emd_group_type"] = "root"
        root.attrs["python_class"] = "Root"
        g = root.create_group("datacube")
        g.attrs["emd_group_type"] = "array"
        g.attrs["python_class"] = "Array"
        d = g.create_dataset("data", data=data, chunks=(1, 1) + tuple(data.shape[2:]) if chunks else None)
        d.attrs["units"] = "counts"
        names = ["Rx", "Ry", "Qx", "Qy"]
        scales = [step, step, pixel_size, pixel_size]
        units = ["A", "A", "A^-1", "A^-1"]
        for k in range(4):
            s = 1.0 if scales[k] is None else scales[k]
            dd = g.create_dataset(f"dim{k}", data=np.array([0.0, s]))
            dd.attrs["name"] = names[k]
            dd.attrs["units"] = units[k] if scales[k] is not None else "pixels"
        if energy is not None or semiangle is not None:
            mb = g.create_group("metadatabundle")
            mb.attrs["emd_group_type"] = "metadatabundle"
            m = mb.create_group("calibration")
            m.attrs["emd_group_type"] = "metadata"
            m.attrs["python_class"] = "Metadata"
            if energy is not None:
                m.create_dataset("energy", data=float(energy)).attrs["type"] = "number"
            if semiangle is not None:
                m.create_dataset("semiangle", data=float(semiangle)).attrs["type"] = "number"


_CACHE: dict = {}


def all_regions_scan(rows_per_region=4, sx=10, electrons=1e5, seed=11):
    """Cached scan with one band of ``rows_per_region`` rows per region (pure pixels) and Type 1 SRO positions
    drawn uniformly in 0.325–0.345 Å⁻¹ (the study's pixel-to-pixel range); descan, ellipse 1.015 at 0.4 rad."""
    key = ("all", rows_per_region, sx, electrons, seed)
    if key not in _CACHE:
        rng = np.random.default_rng(seed)
        codes = np.repeat(np.arange(len(REGIONS)), rows_per_region)[:, None] * np.ones((1, sx), int)
        sro = np.where(codes == REGIONS.index("type1"), rng.uniform(0.325, 0.345, codes.shape), np.nan)
        _CACHE[key] = make_scan(codes, sro_map=sro, rng=rng, ellipse=(1.015, 0.4), electrons=electrons)
    return _CACHE[key]


def layered_scan(sx=8, electrons=1e5, seed=12, roughness=0.3):
    """Cached Li | Type 1 | Type 2 | Cu stack along scan y (the study's bottom interface): Type 1 from 5.3 to 9.1
    steps (3.8 steps), Type 2 from 9.1 to 17.9 steps (8.8 steps), interfaces roughened per column."""
    key = ("layered", sx, electrons, seed, roughness)
    if key not in _CACHE:
        w = layered_weights((24, sx), [5.3, 9.1, 17.9], ["li", "type1", "type2", "cu"], roughness=roughness, rng=seed)
        data, truth = make_scan(w, rng=seed, electrons=electrons)
        # exact thickness per column [steps] = coverage summed across the layer
        truth["layers"] = {r: w[..., REGIONS.index(r)].sum(axis=0) for r in ("type1", "type2")}
        _CACHE[key] = (data, truth)
    return _CACHE[key]
