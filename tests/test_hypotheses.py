"""Tests of fitting.hypotheses: ranking, nested likelihood-ratio tests, peak attribution, bad input.

The data of the ranking demonstrations are generated independently of the fitted components (analytic
functions with different peak widths and an extra weak term), never from the candidates themselves. The
calibration test of the boundary-corrected likelihood-ratio test draws data from the null model: that is the
oracle for "is the p-value uniform under H0 / is D a 50:50 χ²₀:χ²₁ mixture" (Self & Liang 1987).
"""

from __future__ import annotations

import numpy as np
import pytest

from fitting.hypotheses import compare, explain_peaks, lrt_pvalue

DQ = 0.005
Q = np.arange(1, 261) * DQ
EXPOSURE = 2 * np.pi * Q / DQ


def gauss(q, q0, w):
    return np.exp(-0.5 * ((q - q0) / w) ** 2)


def sro(q, w=0.04):
    return gauss(q, 0.33, w) + 0.5 * gauss(q, 0.6, 1.5 * w)


def lif(q, w=0.012):
    return 0.6 * gauss(q, 0.430, w) + gauss(q, 0.497, w) + 0.7 * gauss(q, 0.702, 1.15 * w)


def li2o(q, w=0.012):
    """Li₂O 111/220/311 at 0.376/0.613/0.719 Å⁻¹ (shared/README table)."""
    return gauss(q, 0.376, w) + 0.6 * gauss(q, 0.613, w) + 0.4 * gauss(q, 0.719, w)


CANDIDATES = {
    "sro": {"sro": sro(Q)},
    "sro+LiF": {"sro": sro(Q), "LiF": lif(Q)},
    "sro+Li2O": {"sro": sro(Q), "Li2O": li2o(Q)},
    "sro+LiF+Li2O": {"sro": sro(Q), "LiF": lif(Q), "Li2O": li2o(Q)},
}
KW = {"q_range": (0.15, 1.2)}  # residual blur fitted: the data peaks are broader than the components


def type2_like_counts(rng, lif_scale=10.0, extra=0.0):
    """'Measured' Type-2-like profile made independently of the candidates (analytic functions, not the
    component arrays): every peak broadened as by a Gaussian of σ = 0.01 Å⁻¹ (w → sqrt(w² + σ²)), at 1.005× the
    components' Q, optionally with a weak term at 0.95 Å⁻¹ that no candidate has (model misfit)."""
    x = 1.005 * Q
    b = 0.01

    def wb(w):
        return np.hypot(w, b)

    signal = 25.0 * (0.04 / wb(0.04) * gauss(x, 0.33, wb(0.04)) + 0.5 * 0.06 / wb(0.06) * gauss(x, 0.6, wb(0.06)))
    signal += lif_scale * (
        0.012 / wb(0.012) * (0.6 * gauss(x, 0.430, wb(0.012)) + gauss(x, 0.497, wb(0.012)))
        + 0.7 * 0.0138 / wb(0.0138) * gauss(x, 0.702, wb(0.0138))
    )
    signal += extra * gauss(x, 0.95, 0.05)
    return rng.poisson(EXPOSURE * (signal + 20.0 * (Q / 0.4) ** -2.7)).astype(float)


def test_ranks_the_generating_structure_first_and_tests_nesting(rng):
    y = type2_like_counts(rng)
    c = compare((Q, y, EXPOSURE), CANDIDATES, **KW)
    assert c.best == "sro+LiF" or (c.best == "sro+LiF+Li2O" and c.row("sro+LiF").delta_aic < 2.5)
    assert c.fits[c.best].blur_sigma()[0] > 0.003  # the broader data peaks are absorbed by the residual blur
    assert c.row("sro").delta_aic > 100 and c.row("sro+Li2O").delta_aic > 100
    assert sum(r.akaike_weight for r in c.rows) == pytest.approx(1.0)
    assert [r.aic for r in c.rows] == sorted(r.aic for r in c.rows)
    # nesting detected from component names: sro ⊂ sro+LiF, sro ⊂ sro+Li2O, both ⊂ the triple, sro ⊂ triple
    pairs = {(t.null, t.alternative) for t in c.tests}
    assert pairs == {
        ("sro", "sro+LiF"),
        ("sro", "sro+Li2O"),
        ("sro", "sro+LiF+Li2O"),
        ("sro+LiF", "sro+LiF+Li2O"),
        ("sro+Li2O", "sro+LiF+Li2O"),
    }
    t = c.test("sro", "sro+LiF")
    assert t.df == 1 and t.extra == ("LiF",) and t.p_value < 1e-10
    assert t.statistic == pytest.approx(2 * (c.fits["sro+LiF"].loglike - c.fits["sro"].loglike))
    assert "sro+LiF" in c.table() and "LRT" in str(c)
    assert not any("does not fit" in w for w in c.warnings)
    assert c.row("sro+LiF").gof_p > 1e-3


def test_misfit_is_reported(rng):
    """Data with a feature no candidate has: the best candidate's deviance/dof is large and the tool says
    that the ranking and the p-values are then not to be trusted."""
    y = type2_like_counts(rng, extra=1.0)
    c = compare((Q, y, EXPOSURE), CANDIDATES, **KW)
    assert any("does not fit" in w for w in c.warnings)
    assert c.rows[0].gof_p < 1e-6


def test_which_component_explains_which_peak(rng):
    y = type2_like_counts(rng)
    c = compare((Q, y, EXPOSURE), {"sro+LiF": CANDIDATES["sro+LiF"]}, **KW)
    peaks = {round(p.position, 2): p for p in c.peaks["sro+LiF"]}
    p200 = min(c.peaks["sro+LiF"], key=lambda p: abs(p.position - 0.497 / 1.005))
    assert p200.dominant == "LiF" and p200.fractions["LiF"] > 0.55
    p_sro = min(c.peaks["sro+LiF"], key=lambda p: abs(p.position - 0.33 / 1.005))
    assert p_sro.dominant == "sro" and p_sro.fractions["sro"] > 0.9
    for p in peaks.values():
        assert sum(p.fractions.values()) == pytest.approx(1.0)
    # explicit windows
    (w,) = explain_peaks(c.fits["sro+LiF"], [(0.48, 0.51)])
    assert w.fractions["LiF"] > 0.6


def test_lrt_is_calibrated_under_the_null_with_boundary_mixture():
    """Data from the null model (no LiF): about half of the D are exactly 0 (the LiF scale sits at its bound)
    and the boundary-corrected p-value rejects at 5 % about 5 % of the time."""
    mu = EXPOSURE * (25.0 * sro(Q) + 20.0 * (Q / 0.4) ** -2.7)
    cands = {"sro": CANDIDATES["sro"], "sro+LiF": CANDIDATES["sro+LiF"]}
    kw = {"q_range": (0.15, 1.2), "blur": False, "q_scale": False}
    d, p = [], []
    for seed in range(80):
        y = np.random.default_rng(300 + seed).poisson(mu).astype(float)
        t = compare((Q, y, EXPOSURE), cands, **kw).test("sro", "sro+LiF")
        d.append(t.statistic)
        p.append(t.p_value)
    d, p = np.array(d), np.array(p)
    assert 0.3 <= np.mean(d < 1e-6) <= 0.7  # 50:50 mixture, binomial ±3σ for n = 80
    assert np.mean(p < 0.05) <= 0.12
    assert np.mean(p < 0.5) == pytest.approx(0.5, abs=0.17)


def test_lrt_pvalue_mixture_values():
    # one extra scale: p = ½·P(χ²₁ > D); D = 2.706 → 0.05 (the 90 % point of χ²₁)
    assert lrt_pvalue(2.7055, 1) == pytest.approx(0.05, abs=1e-4)
    assert lrt_pvalue(2.7055, 1, boundary=False) == pytest.approx(0.10, abs=1e-4)
    assert lrt_pvalue(0.0, 2) == 1.0
    # two extra scales: ¼χ²₀ + ½χ²₁ + ¼χ²₂ at D = 4: ½·0.0455 + ¼·0.1353
    assert lrt_pvalue(4.0, 2) == pytest.approx(0.5 * 0.04550026 + 0.25 * 0.13533528, rel=1e-6)
    with pytest.raises(ValueError, match="df"):
        lrt_pvalue(1.0, 0)


def test_indistinguishable_candidates_are_reported(rng):
    """Two candidates that differ only below the noise (LiF 220 width 1.2×) — the tool says so."""
    y = rng.poisson(EXPOSURE * (2.0 * sro(Q) + 1.0)).astype(float)
    c = compare(
        (Q, y, EXPOSURE),
        {"a": {"sro": sro(Q)}, "b": {"sro_wide": sro(Q, 0.0402)}},
        q_range=(0.15, 1.2),
        blur=False,
        q_scale=False,
    )
    assert any("do not tell them apart" in w for w in c.warnings)
    assert not c.tests  # different component names → not nested


def test_degenerate_parameters_are_reported(rng):
    """Two nearly identical components: their scales are unidentifiable (correlation ≈ −1)."""
    y = rng.poisson(EXPOSURE * (5.0 * sro(Q) + 5.0 * sro(Q, 0.0401) + 2.0)).astype(float)
    c = compare(
        (Q, y, EXPOSURE),
        {"twins": {"s1": sro(Q), "s2": sro(Q, 0.0401)}},
        q_range=(0.15, 1.2),
        blur=False,
        q_scale=False,
    )
    assert any(a == "s1" and b == "s2" and rho < -0.95 for a, b, rho in c.degeneracies["twins"])
    assert any("degenerate" in w for w in c.warnings)


def test_callable_candidates_and_same_name_different_data_not_nested(rng):
    y = type2_like_counts(rng)
    c = compare(
        (Q, y, EXPOSURE),
        {"sro": lambda: {"sro": sro(Q)}, "sro'+LiF": lambda: {"sro": sro(Q, 0.045), "LiF": lif(Q)}},
        **KW,
    )
    assert not c.tests  # the shared name 'sro' holds different arrays: not nested
    assert c.best == "sro'+LiF"


def test_bad_input(rng):
    y = type2_like_counts(rng)
    with pytest.raises(ValueError, match="candidates is empty"):
        compare((Q, y, EXPOSURE), {})
    with pytest.raises(TypeError, match="Mapping"):
        compare((Q, y, EXPOSURE), [CANDIDATES["sro"]])
    with pytest.raises(ValueError, match="candidate 'x'"):
        compare((Q, y, EXPOSURE), {"x": {}})
    with pytest.raises(TypeError, match="measured"):
        compare(y, CANDIDATES)


def test_non_converged_candidate_is_flagged(rng):
    y = type2_like_counts(rng)
    c = compare((Q, y, EXPOSURE), {"sro": CANDIDATES["sro"], "sro+LiF": CANDIDATES["sro+LiF"]}, max_iter=1, **KW)
    assert any("did not converge" in w for w in c.warnings)
    assert all(not t.valid and np.isnan(t.p_value) for t in c.tests)


# ------------------------------------------------------------------------------------------------------------
# physics demonstrations (kinematic Debye I(Q) of structures.crystals nanocrystals, probe-convolved through
# simkit.radial). The "measured" crystal is a different random realisation (seed) from the components.
# ------------------------------------------------------------------------------------------------------------
def _lif_setup(diameter, vacancies, semiangle=0.15):
    import simkit.kinematic as kinematic
    import structures.crystals as crystals

    q = np.linspace(0.0, 1.3, 521)
    plan = kinematic.make_probe_convolution(q, semiangle=semiangle, energy=300e3)

    def prof(v, seed):
        return plan(kinematic.debye_intensity(crystals.nanocrystal("LiF", diameter, f_vacancy=v, rng=seed), q))

    comps = {v: prof(v, 1) for v in vacancies}
    data = prof(0.2, 7)  # 20 % F vacancies, independent realisation
    return comps, data


def _vacancy_demo(comps, data, dose, seed, refine_x=True):
    """Type-2-like profile: defective LiF + SRO at 0.297 Å⁻¹ (data) — candidates with stoichiometric or
    defective LiF + an SRO component at 0.295 Å⁻¹; then refine the vacancy fraction x with a model quadratic in
    x (|F|² is quadratic in the F occupancy) interpolated through the components."""
    from fitting.model import Component
    from fitting.refine import Parameter, likelihood_objective, refine

    vs = sorted(comps)
    pq, cnt = data.q, data.count
    norm = np.nanmax(comps[vs[0]].mean[pq > 0.3])
    sro_c = gauss(pq, 0.295, 0.03)
    mu = cnt * dose * (gauss(pq, 0.297, 0.032) + data.mean / norm + 0.3 * (np.maximum(pq, 0.01) / 0.4) ** -2)
    y = np.random.default_rng(seed).poisson(np.nan_to_num(mu)).astype(float)
    cands = {f"LiF {round(v * 100)}%": {"sro": sro_c, f"LiF{round(v * 100)}": comps[v]} for v in vs}
    c = compare((pq, y, cnt), cands, q_range=(0.2, 1.0))
    if not refine_x:
        return c, None
    stack = np.nan_to_num(np.stack([comps[v].mean for v in vs]))
    coef = np.linalg.lstsq(np.vander(np.array(vs), 3, increasing=True), stack, rcond=None)[0]
    obj = likelihood_objective((pq, y, cnt), name="LiF", fixed_components={"sro": sro_c}, q_range=(0.2, 1.0))
    res = refine(
        [Parameter(name="f_vacancy", start=0.05, lower=0.0, upper=0.45)],
        builder=lambda p, rng: p["f_vacancy"],
        simulator=lambda x: Component(name="LiF", q=pq, intensity=coef[0] + x * coef[1] + x * x * coef[2]),
        objective=obj,
        progress=False,
    )
    return c, res


def test_defective_lif_assigned_over_stoichiometric_ci():
    """CI size: 30 Å crystals, two candidates, no refinement (the slow variant refines x)."""
    comps, data = _lif_setup(30.0, (0.0, 0.2))
    c, _ = _vacancy_demo(comps, data, dose=0.1, seed=0, refine_x=False)
    assert c.best == "LiF 20%"
    assert c.row("LiF 0%").delta_aic > 10


@pytest.mark.slow
@pytest.mark.parametrize("dose", [0.03, 0.1, 0.3, 1.0])
def test_defective_lif_assigned_over_stoichiometric_full(dose):
    """40 Å LiF (≈ 3700 atoms), candidates with 0/10/20/30 % F vacancies, 0.15 mrad; doses from ≈ 13 to
    ≈ 440 counts per bin. Measured on this machine: best 'LiF 20 %' at every dose, ΔAIC(0 %) = 9 … 220,
    refined x = 0.18–0.22."""
    comps, data = _lif_setup(40.0, (0.0, 0.1, 0.2, 0.3))
    c, res = _vacancy_demo(comps, data, dose=dose, seed=0)
    assert c.best == "LiF 20%"
    assert res.params["f_vacancy"] == pytest.approx(0.2, abs=0.05)


def _li2s_vs_amorphous(semiangle, doses, seeds):
    """Li₂S nanocrystal (111 at 0.303 Å⁻¹; 26 Å 'measured', 30 Å component) against an amorphous SRO
    candidate with its first maximum at 0.295 Å⁻¹ (and 0.55 Å⁻¹); both probe-convolved. Returns ΔAIC of the
    amorphous candidate relative to Li₂S for each dose and seed (positive: Li₂S preferred)."""
    import simkit.kinematic as kinematic
    import structures.crystals as crystals

    q = np.linspace(0.0, 1.4, 561)
    plan = kinematic.make_probe_convolution(q, semiangle=semiangle, energy=300e3)
    comp = plan(kinematic.debye_intensity(crystals.nanocrystal("Li2S", 30.0, rng=1), q))
    data = plan(kinematic.debye_intensity(crystals.nanocrystal("Li2S", 26.0, rng=2), q))
    am = plan(gauss(q, 0.295, 0.03) + 0.4 * gauss(q, 0.55, 0.06))
    pq, cnt = data.q, data.count
    li2s = data.mean / np.nanmax(data.mean[(pq > 0.25) & (pq < 0.4)])
    out = np.empty((len(doses), len(seeds)))
    for i, dose in enumerate(doses):
        mu = np.nan_to_num(cnt * dose * (li2s + 0.5 * (np.maximum(pq, 0.01) / 0.4) ** -2))
        for j, seed in enumerate(seeds):
            y = np.random.default_rng(seed).poisson(mu).astype(float)
            c = compare((pq, y, cnt), {"Li2S": {"Li2S": comp}, "amorphous": {"am": am}}, q_range=(0.2, 1.0))
            out[i, j] = c.fits["amorphous"].aic - c.fits["Li2S"].aic
    return out


def test_li2s_vs_amorphous_sro_ci():
    """0.15 mrad at ≈ 16 counts per bin separates Li₂S 111 (0.303) from an SRO maximum at 0.295 decisively."""
    d = _li2s_vs_amorphous(0.15, [0.03], [0, 1])
    assert np.all(d > 30)


@pytest.mark.slow
def test_li2s_vs_amorphous_sro_what_data_tell_them_apart():
    """Which semiangle and dose tell Li₂S from an amorphous 0.295 Å⁻¹ SRO (ΔAIC, 5 seeds). Measured: at 2 mrad
    and ≈ 1 count per bin the two are not distinguishable (ΔAIC ≈ 1, the tool warns); 2 mrad needs ≈ 40 counts
    per bin for ΔAIC ≈ 40; 0.15 mrad reaches ΔAIC ≈ 40 at ≈ 5 counts per bin (sharper rings: 200 at 0.350 and
    220 at 0.496 resolved)."""
    seeds = [0, 1, 2, 3, 4]
    wide = _li2s_vs_amorphous(2.0, [0.003, 0.1], seeds)
    narrow = _li2s_vs_amorphous(0.15, [0.003, 0.01], seeds)
    assert np.median(wide[0]) < 6  # ≈ 1 count/bin at 2 mrad: not (or barely) distinguishable
    assert np.all(wide[1] > 10)
    assert np.all(narrow[1] > 10)
    assert np.median(narrow[1]) > np.median(wide[0]) + 10


# ----------------------------------------------------------------------------------------------------------
# physics oracle: a synthetic scan of known structures through synth → analyze_scan → hypothesis_test
# ----------------------------------------------------------------------------------------------------------
#: True candidate of each region of the oracle scene, and a deliberately wrong one.
_TRUE = {"sei_type1": "Type 1 SRO", "sei_type2": "Type 2 matrix + LiF", "electrolyte": "electrolyte"}
_WRONG = {"sei_type1": "Type 2 matrix", "sei_type2": "Type 1 SRO", "electrolyte": "Type 1 SRO"}


@pytest.fixture(scope="module")
def oracle_scan(tmp_path_factory):
    """Type 1 | Type 2 + LiF | electrolyte (HCE), 4 × 15 positions at 4 nm, sharp vertical interfaces between pixel
    centres (pure pixels: the 2 mrad probe's 95 % radius is 1.9 nm < half a step), no local variation, SRO peaks
    at the study's 0.33 / 0.295 / 0.285 Å⁻¹; tiny-preset amorphous entries (kinematic) and one LiF crystal (so the
    class sum holds exactly the crystal the candidate holds: the synthesiser only rotates it in plane)."""
    from fitting.io import load_scan
    from fitting.pipeline import analyze_scan
    from simkit.library import EntrySpec, build_library, preset_specs
    from simkit.synth import default_scan, synthesize_scan
    from structures.scenes import Interface, Region, Scene

    d = tmp_path_factory.mktemp("oracle")
    _, probe = default_scan("bottom")
    amorphous = ("sei_type1", "type2_matrix", "electrolyte")
    specs = [EntrySpec(kind="vacuum")] + [s for s in preset_specs("tiny") if s.kind in amorphous]
    specs.append(EntrySpec(kind="lif", method="kinematic", params={"diameter": 30.0, "f_vacancy": 0.0,
                                                                   "orientation": "random"}, seed=300))  # fmt: skip
    lib = build_library(specs, probe=probe, thickness=60.0, cache_dir=d / "lib", progress=False)
    hce = {"electrolyte": "hce", "sei_variant": "hce"}
    scene = Scene(
        name="oracle",
        layers=(
            Region(name="type1", kind="sei_type1", params={"sro_peak": 0.33, **hce}),
            Region(
                name="type2",
                kind="sei_type2",
                params={"sro_peak": 0.295, "lif_volume_fraction": 0.1, "lif_diameter": 30.0, **hce},
            ),  # fmt: skip
            Region(name="electrolyte", kind="electrolyte", params={"sro_peak": 0.285, "electrolyte": "hce"}),
        ),
        interfaces=(Interface(position=4.5 * 40.0), Interface(position=9.5 * 40.0)),
        thickness=300.0,
        field_shape=(4, 15),
        step=40.0,
    )
    syn = synthesize_scan(scene, d / "scan.h5", library=lib, electrons_per_pattern=2e5, seed=3, progress=False)
    res = analyze_scan(load_scan(d / "scan.h5"), None, figures=False)
    return res, lib, syn.truth, scene


def test_hypothesis_test_ranks_the_true_structure_first_with_poisson_deviance(oracle_scan):
    """Per amorphous class (the truth's regions, so that the oracle tests the hypothesis test, not the classifier):
    the true structure ranks first, its deviance/dof is that of Poisson noise and a wrong structure fits worse.

    Tolerance: for a correct model the deviance is ≈ χ²(dof), mean dof and sd √(2 dof); dof ≈ 90 here, so
    deviance/dof = 1 ± 0.15 (1σ). The bound 1 ± 5σ allows for the calibration's few-tenths-of-a-percent ellipse
    and centre errors (measured: 0.80, 1.07, 1.19 for Type 1, Type 2 + LiF, electrolyte). The mean of the
    library's dilations of the right structure, used as one candidate, gives 3.7 for Type 1 (and ranks a single
    density first); a wrong structure gives 5.6–110, required > 1 + 15σ.
    """
    import dataclasses

    from fitting.classify import CLASSES
    from fitting.pipeline import hypothesis_test

    res, lib, truth, scene = oracle_scan
    names = [r.kind for r in scene.regions]
    classes = np.array([CLASSES.index(names[r]) for r in truth["region"].ravel()]).reshape(truth["region"].shape)
    assert np.mean(res.classes == classes) >= 0.8  # the classifier agrees with the truth on most pixels
    tests = hypothesis_test(dataclasses.replace(res, classes=classes), lib)
    assert set(tests) == set(_TRUE)
    for c, comp in tests.items():
        best = comp.rows[0]
        row = comp.row(_TRUE[c])
        dof = max(row.dof, 1)
        tol = 5 * np.sqrt(2.0 / dof)
        # the true structure is first, or a candidate nesting it whose extra components AIC cannot tell apart
        assert best.name == _TRUE[c] or (set(row.components) < set(best.components) and row.delta_aic < 2.0), (
            c, [(r.name, round(r.delta_aic, 1)) for r in comp.rows[:4]])  # fmt: skip
        assert abs(row.deviance / dof - 1.0) < tol, (c, row.deviance / dof, tol)
        wrong = comp.row(_WRONG[c])
        assert wrong.delta_aic > 100 and wrong.deviance / max(wrong.dof, 1) > 1 + 3 * tol, (c, wrong.deviance)
