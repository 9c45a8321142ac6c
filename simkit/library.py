"""Pattern library: representative noise-free patterns per region kind, simulated once and cached on disk.

A library entry is one noise-free diffraction pattern on the detector grid (a
:class:`simkit.geometry.DetectorGeometry`), normalised to an incident intensity of 1 (the direct beam
included), for one piece of material:

* ``li_metal`` / ``cu`` / ``li2o`` — a crystal column of the library thickness, one entry per zone axis
  (multislice, simkit.nbed);
* ``sei_type1`` / ``electrolyte`` / ``type2_matrix`` — an amorphous column of the library thickness, one entry
  per density / random configuration;
* ``lif`` — one LiF nanocrystal (diameter, F-vacancy fraction, random orientation) in vacuum (multislice);
* ``li2o_damage`` — Li₂O crystallites formed by beam damage (analytic powder profile, probe-convolved);
* ``vacuum`` — the probe alone.

Methods: ``"multislice"`` (abTEM through :func:`simkit.nbed.simulate_pattern`, then
:func:`simkit.nbed.to_detector`), ``"disc_multislice"``, ``"kinematic"`` or ``"auto"``.

``"disc_multislice"`` (oriented bulk crystals under a narrow-aperture probe): multislice with a wider probe
(:data:`PROXY_SEMIANGLE` = 2 mrad, whose 31 Å cell is cheap), each disc's integrated intensity (background
from a ring around it) redrawn as a disc of the probe's semi-angle at the same reflection. For a laterally
uniform crystal the intensity of a non-overlapping disc does not depend on the probe position, and on the
convergence only through the spread of excitation errors across the disc (α·g ≈ 10⁻³ Å⁻¹ at 2 mrad); so the
dynamical intensities of a zone-axis Cu grain, which kinematic (even two-beam) theory gets wrong by up to 7×
at 6 nm, come out right (tests/test_library.py compares with a direct 1 mrad multislice run).

Kinematic entries:

* amorphous regions and damage crystallites — Debye I(Q) of the model with electron scattering factors
  (a shipped relaxed model: every seed on its own periodic cell, pair cut-off L/2, atom-weighted mean over the
  seeds — a repeated cell would show its reciprocal lattice |n|/L), rendered on the detector with the exact
  probe convolution of :func:`simkit.kinematic.make_probe_convolution`, plus the direct disc. The intensity per
  pixel is n_A · γ² λ² · I_atom(Q) · Δq² with n_A the areal atom density [Å⁻²] of the column, γ the relativistic
  factor and I_atom the Debye intensity per atom [Å²] (dσ/dΩ = γ²|f|² and dΩ = λ² d²Q). They have no speckle
  (they are the ensemble average).
* oriented bulk crystals (``li_metal``, ``cu``, ``li2o``) — a laterally infinite slab of the library
  thickness: every reflection of :func:`simkit.kinematic.kinematic_spots` is a disc of the probe semi-angle
  carrying the two-beam (Howie–Whelan) intensity I_g = K² sin²(π t s_eff)/(π s_eff)², K = λγ|F_g|/Ω = π/ξ_g,
  s_eff = √(s_g² + (K/π)²): the kinematic (λγ|F_g|t/Ω)² sinc²(π s_g t) for t ≪ ξ_g, bounded by 1 for thick
  crystals; an isotropic Debye–Waller factor exp(−4π²⟨u²⟩g²) (Debye model at 100 K,
  :data:`simkit.nbed.DEFAULT_DISPLACEMENT`, mean over the atoms of the cell). Many-beam zone-axis dynamics,
  absorption and thermal diffuse scattering are left out; the spot sum is capped at 95 % of the beam.
* LiF nanocrystals (``lif``) — the kinematic amplitude A(q) = Σ_j f_j(|q|) e^(−2π²u_j²q²) e^(2πi q·r_j) of
  the crystal's atoms on the Ewald sphere at every detector pixel (so the finite crystal's shape transform
  and excitation errors are exact), illuminated uniformly over its projected area π d²/4 (the entry scatters
  as much as a LiF column of its mean chord 2/3·d, which is how the compositor counts crystals), then
  convolved with the probe disc. The crystal's small-angle lobe around q = 0 (|q| < ½ |g_111|) is left out:
  in a scene the crystal sits in an amorphous matrix of similar mean inner potential that cancels most of it.

``"auto"`` (:func:`resolve_method`, the one place that chooses) takes multislice when the cell the probe needs
(:func:`simkit.nbed.required_extent`) is affordable — :func:`simkit.nbed.estimate_cost` below
:data:`MULTISLICE_BUDGET` flops and at most :data:`MAX_MULTISLICE_GPTS` grid points a side — and otherwise
``"disc_multislice"`` for bulk crystals and kinematic for the rest: a 2 mrad probe needs a 31 Å cell
(multislice), a 0.15 mrad probe a 414 Å cell (≈ 10¹¹ flops and 4300² points per entry: disc_multislice for Li,
Cu, Li₂O; kinematic for the 3 nm LiF crystals, which are smaller than the probe and weak scatterers). Each
entry records the method it used in ``info["method"]`` (with ``info["method_reason"]``), and the resolved
method is part of the cache key. A future method (for example a plane-wave multislice ``"slab"`` path for
dynamical LiF intensities) is a new branch of
:func:`resolve_method` and a builder in ``_BUILDERS``.

Entries are cached in HDF5 files named by a hash of (entry parameters, probe, geometry, thickness, multislice
settings, library format version) under ``cache_dir``; a second build with the same settings simulates nothing.
Files are written atomically (temporary file + rename), so concurrent builders never leave a corrupt entry.
Building is parallel through dask: the local threaded scheduler by default (each task limited to one inner
thread for numba, BLAS and FFT, so two tasks fill the two cores without oversubscription), or a
``dask.distributed`` client (``client=`` or ``scheduler_address=``) for a cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simkit.geometry import DetectorGeometry
from simkit.units import q_to_mrad
from structures.checks import check_positive

__all__ = [
    "ENTRY_KINDS",
    "PRESETS",
    "MAX_MULTISLICE_GPTS",
    "METHODS",
    "MULTISLICE_BUDGET",
    "PROXY_SEMIANGLE",
    "EntrySpec",
    "LibraryEntry",
    "PatternLibrary",
    "build_entry",
    "build_library",
    "default_cache_dir",
    "preset_specs",
    "resolve_method",
]

#: Library format version (part of every cache key; bump when the meaning of an entry changes).
FORMAT_VERSION = 2

#: Simulation methods of an entry ("auto": chosen from the probe by :func:`resolve_method`).
METHODS = ("multislice", "disc_multislice", "kinematic", "auto")
#: Largest semi-angle [mrad] of the wide-aperture multislice run behind a ``disc_multislice`` entry (the default
#: probe's; lowered where the zone's discs would overlap).
PROXY_SEMIANGLE = 2.0
#: Largest multislice cost [flops, simkit.nbed.estimate_cost] that "auto" accepts for one entry (≈ 2 min on
#: one core): a 600 Å Cu column with 4 phonons at 2 mrad costs 2.3e10, a 60 Å one at 0.15 mrad 1.3e11.
MULTISLICE_BUDGET = 5.0e10
#: Largest multislice grid side [points] that "auto" accepts (a 2048² potential slice is 16 MB in float32).
MAX_MULTISLICE_GPTS = 2048
#: Crystal entry kinds (phase of each) with a kinematic path.
_CRYSTAL_PHASE = {"li_metal": "Li", "cu": "Cu", "li2o": "Li2O", "lif": "LiF"}

#: Entry kinds the library knows.
ENTRY_KINDS = (
    "vacuum",
    "li_metal",
    "cu",
    "li2o",
    "sei_type1",
    "type2_matrix",
    "lif",
    "electrolyte",
    "li2o_damage",
)

#: Density span [g/cm³] of the Type 1 entries (uniform dilations of the relaxed model ``type1_default``; see
#: preset_specs). Wide on purpose: the I·Q maximum after the 2 mrad convolution responds weakly to dilation (the
#: falling ⟨f²⟩ self term and the probe disc hold it back), so the ends are what extreme requests cost, not
#: plausible SEI densities — the truth's density says what a request cost. Below ≈ 0.30 Å⁻¹ no density of this
#: model has a maximum there (it bottoms out near 0.9–1.0 g/cm³); such requests go to TYPE1_CANDIDATE_DENSITIES.
TYPE1_DENSITY_SPAN = (0.9, 3.6)
#: Densities [g/cm³] of the Type 2 matrix entries.
TYPE2_DENSITIES = (1.5, 2.0, 2.6)
#: Other C-free Type 1 candidate compositions in the presets (shipped relaxed model → densities [g/cm³] of its
#: uniform dilations; entries carry ``params["model"]``). The compositor takes a Type 1 region's own model wherever
#: the requested SRO peak lies inside that model's dilation span and, outside it, the candidate whose span holds
#: the request with the smallest dilation from its relaxed density (``simkit.synth``; the truth records model and
#: density). No density of the default model peaks below ≈ 0.30 Å⁻¹ after the 2 mrad convolution, but the top
#: interface asks for 0.295 Å⁻¹ (± 2 % local variation): ``type1_nso`` (FSI⁻ fragments NSO₂F²⁻/SO₂F⁻ with F⁻, O²⁻),
#: the candidate whose relaxed Q₁ lies nearest 0.295 Å⁻¹, spans it at 0.7–1.1× its relaxed density.
TYPE1_CANDIDATE_DENSITIES: dict[str, tuple[float, ...]] = {"type1_nso": (1.2, 1.6, 2.0)}
#: Densities [g/cm³] of the dilated HCE electrolyte entries (uniform dilations of the relaxed model
#: ``electrolyte_hce``, ≈ 1.25 g/cm³): the first HCE entry is the relaxed model itself (no ``density`` param, the
#: physical one, ≈ 0.25 Å⁻¹ after the 2 mrad convolution); these reach past the study's 0.285 Å⁻¹, which the
#: I·Q maximum of the relaxed model reaches only near 2.6 g/cm³ (it moves much more weakly than ρ^(1/3)).
ELECTROLYTE_DENSITIES = (2.2, 3.0)

#: Size presets: library column thickness [Å], amorphous model size [atoms], multislice settings.
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests
    "tiny": {"thickness": 60.0, "n_atoms": 600, "n_type1": 3, "n_electrolyte": 1, "n_lif": 2, "n_phonons": 1},
    # about a minute on 2 cores: for `make demo`. 16 LiF orientations: only ≈ 25 % of random 3 nm orientations show
    # discs at 2 mrad, and 16 make a library whose Type 2 shows no LiF spots at all unlikely (≈ 1 %)
    "demo": {"thickness": 150.0, "n_atoms": 1500, "n_type1": 5, "n_electrolyte": 2, "n_lif": 16, "n_phonons": 1},
    # the study's 60 nm lamella: minutes to hours
    "full": {"thickness": 600.0, "n_atoms": 4000, "n_type1": 7, "n_electrolyte": 3, "n_lif": 12, "n_phonons": 4},
}


def default_cache_dir() -> Path:
    """Cache directory: ``$SEI_SEND_CACHE`` or ``.sei-send-cache`` in the working directory."""
    return Path(os.environ.get("SEI_SEND_CACHE", ".sei-send-cache")) / "library"


# ----------------------------------------------------------------------------------------------------------
# specifications
# ----------------------------------------------------------------------------------------------------------
def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer, int)) and not isinstance(obj, bool):
        return int(obj)
    return obj


@dataclass(frozen=True, kw_only=True)
class EntrySpec:
    """What one library entry is.

    Parameters
    ----------
    kind : str
        One of :data:`ENTRY_KINDS`.
    method : str
        ``"multislice"``, ``"kinematic"`` or ``"auto"`` (the cheapest physically right one for the probe,
        :func:`resolve_method`; a built library's entries carry the method actually used).
    params : dict
        Structure parameters: ``density`` [g/cm³], ``zone_axis`` (3 ints), ``diameter`` [Å],
        ``f_vacancy`` [fraction], ``size`` [Å] (Li₂O crystallites), ``n_atoms``; free-form, all hashed.
    seed : int
        Seed of the structure (and of the frozen phonons).
    """

    kind: str
    method: str = "kinematic"
    params: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ENTRY_KINDS:
            raise ValueError(f"kind={self.kind!r} is not a library entry kind; valid: {', '.join(ENTRY_KINDS)}")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: use one of {', '.join(map(repr, METHODS))}")

    def to_dict(self) -> dict:
        """JSON-compatible form."""
        return {"kind": self.kind, "method": self.method, "params": _canonical(self.params), "seed": int(self.seed)}


def preset_specs(preset: str = "demo", *, seed: int = 0, electrolytes: Sequence[str] = ("hce",)) -> list[EntrySpec]:
    """The entries of a size preset.

    Parameters
    ----------
    preset : {"tiny", "demo", "full"}
    seed : int
        Base seed of the structures.
    electrolytes : sequence of str
        Electrolytes whose SEI Type 1 variant and vitrified electrolyte get entries ("hce", "lifsi_1m",
        "lipf6_1m"; structures.sei_variants / structures.electrolyte_presets). Entries of other electrolytes
        than "hce" carry ``params["variant"]`` / ``params["electrolyte"]``; their Type 1 densities span
        1.5–1.9 g/cm³ (the 1 M SEI hypotheses are less dense).

    Returns
    -------
    list of EntrySpec
        Crystal entries have method ``"auto"`` (multislice at 2 mrad, kinematic at 0.15 mrad; amorphous ones
        too in the ``full`` preset, kinematic otherwise). Vacuum; Li metal along [001], [011], [111]; Cu along
        [001], [011], [111], [112]; Li₂O (oxide artefact, [011]); Type 1 at densities spanning TYPE1_DENSITY_SPAN
        (so that the compositor can interpolate the SRO peak, Q₁ ∝ ρ^(1/3)); dilations of the other Type 1
        candidates of TYPE1_CANDIDATE_DENSITIES (``params["model"]``); Type 2 matrix; LiF nanocrystals
        (3 nm, random orientations, 0–30 % F vacancies); electrolyte configurations; Li₂O damage crystallites of
        2, 3.5 and 5 nm.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    # crystals: multislice when the probe's cell is affordable (2 mrad), kinematic otherwise (0.15 mrad)
    amorphous_method = "auto" if preset == "full" else "kinematic"
    n_at = p["n_atoms"]
    specs = [EntrySpec(kind="vacuum", method="kinematic", params={}, seed=0)]
    for zone in ((0, 0, 1), (0, 1, 1), (1, 1, 1)):
        specs.append(EntrySpec(kind="li_metal", method="auto", params={"zone_axis": zone}, seed=seed))
    for zone in ((0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2)):
        specs.append(EntrySpec(kind="cu", method="auto", params={"zone_axis": zone}, seed=seed))
    specs.append(EntrySpec(kind="li2o", method="auto", params={"zone_axis": (0, 1, 1)}, seed=seed))
    # Type 1 and the Type 2 matrix: the shipped relaxed model dilated uniformly to a span of densities around its
    # relaxed one; the compositor interpolates between neighbours on the entries' measured SRO peaks, so a scene's
    # sro_peak is the synthesised one wherever it lies inside the span
    for k, rho in enumerate(np.linspace(*TYPE1_DENSITY_SPAN, p["n_type1"])):
        specs.append(
            EntrySpec(
                kind="sei_type1",
                method=amorphous_method,
                params={"density": round(float(rho), 4), "n_atoms": n_at},
                seed=seed + 100 + k,
            )
        )
    for i, (model, densities) in enumerate(TYPE1_CANDIDATE_DENSITIES.items()):
        for k, rho in enumerate(densities):
            specs.append(
                EntrySpec(
                    kind="sei_type1",
                    method=amorphous_method,
                    params={"density": float(rho), "n_atoms": n_at, "model": model},
                    seed=seed + 700 + 20 * i + k,
                )
            )
    for k, rho in enumerate(TYPE2_DENSITIES):
        specs.append(
            EntrySpec(
                kind="type2_matrix",
                method=amorphous_method,
                params={"density": float(rho), "n_atoms": n_at},
                seed=seed + 200 + k,
            )
        )
    for k in range(p["n_lif"]):
        fv = (0.0, 0.15, 0.3)[k % 3] if preset != "tiny" else (0.0, 0.3)[k % 2]
        specs.append(
            EntrySpec(
                kind="lif",
                method="auto",
                params={"diameter": 30.0, "f_vacancy": fv, "orientation": "random"},
                seed=seed + 300 + k,
            )
        )
    for k in range(p["n_electrolyte"]):
        specs.append(
            EntrySpec(kind="electrolyte", method=amorphous_method, params={"n_atoms": 3 * n_at}, seed=seed + 400 + k)
        )
    # the HCE electrolyte dilated beyond the study's SRO peak, so that a scene's electrolyte sro_peak is the
    # synthesised one (the compositor interpolates on the measured peaks, as for Type 1)
    for k, rho in enumerate(ELECTROLYTE_DENSITIES):
        specs.append(
            EntrySpec(
                kind="electrolyte",
                method=amorphous_method,
                params={"density": float(rho), "n_atoms": 3 * n_at},
                seed=seed + 450 + k,
            )
        )
    for size in (20.0, 35.0, 50.0):
        specs.append(EntrySpec(kind="li2o_damage", method="kinematic", params={"size": size}, seed=0))
    for e, name in enumerate(el for el in electrolytes if el != "hce"):
        for k, rho in enumerate(np.linspace(1.5, 1.9, p["n_type1"])):
            specs.append(
                EntrySpec(
                    kind="sei_type1",
                    method=amorphous_method,
                    params={"density": round(float(rho), 4), "n_atoms": n_at, "variant": name},
                    seed=seed + 500 + 20 * e + k,
                )
            )
        for k in range(p["n_electrolyte"]):
            specs.append(
                EntrySpec(
                    kind="electrolyte",
                    method=amorphous_method,
                    params={"n_atoms": 3 * n_at, "electrolyte": name},
                    seed=seed + 600 + 20 * e + k,
                )
            )
    return specs


# ----------------------------------------------------------------------------------------------------------
# entries
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LibraryEntry:
    """One simulated pattern.

    Attributes
    ----------
    spec : EntrySpec
    pattern : ndarray, shape geometry.shape  [fraction of the incident electrons per pixel]
        Noise-free; includes the direct beam.
    info : dict
        What was simulated (atoms count, density [g/cm³], orientation matrix, vacancy fraction, method, time).
    key : str
        Cache key.
    """

    spec: EntrySpec
    pattern: np.ndarray = field(repr=False)
    info: dict
    key: str


def entry_key(spec: EntrySpec, probe, geometry: DetectorGeometry, thickness: float, ms=None) -> str:
    """Cache key of an entry: SHA-256 of everything that determines its pattern (the resolved method included)."""
    from simkit import __version__

    spec = _resolved(spec, probe, thickness, ms)

    payload = {
        "format": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "probe": _canonical(probe.to_dict()),
        "geometry": {"shape": list(geometry.shape), "pixel_size": geometry.pixel_size, "center": list(geometry.center)},
        "thickness": float(thickness),
        "multislice": _canonical(ms.to_dict())
        if (ms is not None and spec.method in ("multislice", "disc_multislice"))
        else None,
        "version": __version__.split("+")[0],
    }
    if spec.method == "disc_multislice":
        payload["proxy_semiangle"] = PROXY_SEMIANGLE
    if spec.kind in ("sei_type1", "type2_matrix", "electrolyte"):
        from structures.relax import models_fingerprint

        payload["relaxed_models"] = models_fingerprint()  # the amorphous entries are built from them
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _probe_geometry_direct(geometry: DetectorGeometry, probe) -> np.ndarray:
    from simkit.kinematic import disc_radius, render_discs

    return render_discs(geometry, np.zeros((1, 2)), np.ones(1), disc_radius(probe.semiangle, probe.energy))


def _default_ms(probe, n_phonons: int):
    from simkit.nbed import Multislice

    # 0.1 Å sampling reaches 1/(3·0.1) ≈ 3.3 Å⁻¹ (66 mrad) after abTEM's 2/3 antialias; 2 Å slices converge
    # LiF (111)/(200) to < 2 % (docs/convergence.md).
    return Multislice(sampling=0.1, slice_thickness=2.0, n_phonons=n_phonons, max_angle=40.0)


def _structure(spec: EntrySpec, thickness: float, lateral: float):
    """Atoms for a multislice entry [Å]."""
    from structures import amorphous, crystals

    kind, p = spec.kind, spec.params
    if kind in ("li_metal", "cu", "li2o"):
        phase = {"li_metal": "Li", "cu": "Cu", "li2o": "Li2O"}[kind]
        rot = crystals.rotation_to_zone_axis(p.get("zone_axis", (0, 0, 1)))
        return _oriented_slab(crystals.bulk(phase), rot, lateral, thickness)
    if kind == "lif":
        side = max(lateral, float(p.get("diameter", 30.0)) + 10.0)
        return crystals.nanocrystal(
            "LiF",
            float(p.get("diameter", 30.0)),
            orientation=p.get("orientation", "random"),
            f_vacancy=float(p.get("f_vacancy", 0.0)),
            box=(side, side, float(p.get("diameter", 30.0)) + 10.0),
            rng=spec.seed,
        )
    if kind in ("sei_type1", "type2_matrix", "electrolyte"):
        cell = (lateral, lateral, thickness)
        if kind == "sei_type1" and "model" in p:
            from structures import relax

            return relax.relaxed_model(_type1_model(p), density=_opt_float(p.get("density")), cell=cell, rng=spec.seed)
        if kind == "sei_type1" and p.get("variant", "hce") != "hce":
            from structures.sei_variants import sei_variant

            return sei_variant(p["variant"], density=float(p.get("density", 2.0)), cell=cell, rng=spec.seed)
        if kind == "sei_type1":
            return amorphous.type1_sei(density=float(p.get("density", 2.1)), cell=cell, relax=False, rng=spec.seed)
        if kind == "type2_matrix":
            return amorphous.type2_matrix(density=_opt_float(p.get("density")), cell=cell, relax=False, rng=spec.seed)
        return _electrolyte_atoms(p, spec.seed, cell=cell)
    raise ValueError(f"no multislice structure for kind {kind!r}")


def _electrolyte_atoms(p: Mapping, seed: int, *, n_atoms: int | None = None, cell=None):
    """Electrolyte model of an entry: the shipped relaxed model of ``p["electrolyte"]`` (default "hce"), uniformly
    dilated to ``p["density"]`` [g/cm³] when given (the rigid packing at that density when no model is shipped)."""
    from structures import relax
    from structures.electrolyte_presets import study_electrolyte

    name = str(p.get("electrolyte", "hce"))
    rho = _opt_float(p.get("density"))
    size = {"cell": cell} if cell is not None else {"n_atoms": int(n_atoms or 1500)}
    if rho is not None and relax.model_seeds(f"electrolyte_{name}"):
        atoms = relax.relaxed_model(f"electrolyte_{name}", density=rho, rng=seed, **size)
        atoms.info["source"] += f", dilated uniformly to {rho:g} g/cm³"
        return atoms
    return study_electrolyte(name, density=rho, rng=seed, **size)


def _opt_float(x):
    return None if x is None else float(x)


def _oriented_slab(unit, rot: np.ndarray, lateral: float, thickness: float):
    """A laterally periodic-enough box of a rotated crystal: atoms of a large supercell inside the box."""
    from ase import Atoms

    a = np.abs(np.diag(unit.cell.array)).max()
    reach = np.sqrt(2 * lateral**2 + thickness**2)
    n = int(np.ceil(reach / a)) + 1
    grid = np.arange(-n, n + 1)
    shifts = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3) @ unit.cell.array
    pos = (shifts[:, None, :] + unit.positions[None]).reshape(-1, 3) @ rot.T
    num = np.tile(unit.numbers, len(shifts))
    centre = np.array([lateral / 2, lateral / 2, thickness / 2])
    pos = pos + centre
    keep = np.all((pos >= 0) & (pos < [lateral, lateral, thickness]), axis=1)
    return Atoms(numbers=num[keep], positions=pos[keep], cell=[lateral, lateral, thickness], pbc=True)


# ----------------------------------------------------------------------------------------------------------
# method choice (the one place: a new method, e.g. a plane-wave "slab" path, is a branch here + a builder)
# ----------------------------------------------------------------------------------------------------------
def _multislice_box(spec: EntrySpec, probe, thickness: float) -> tuple[float, float]:
    """Lateral cell side and slab thickness [Å] a multislice entry would use."""
    from simkit.nbed import required_extent

    lateral = float(required_extent(probe)) * 1.05
    if spec.kind == "lif":
        d = float(spec.params.get("diameter", 30.0))
        return max(lateral, d + 10.0), d + 10.0
    return lateral, float(thickness)


def _method_choice(spec: EntrySpec, probe, thickness: float, ms=None) -> tuple[str, str]:
    """(method, reason) for one entry; see :func:`resolve_method`."""
    if spec.method != "auto":
        return spec.method, "requested"
    if spec.kind in ("vacuum", "li2o_damage"):
        return "kinematic", "analytic entry"
    from simkit.nbed import estimate_cost

    ms = ms or _default_ms(probe, 1)
    lateral, t = _multislice_box(spec, probe, thickness)
    cost = estimate_cost(probe, ms, (lateral, lateral), t, 1)
    side = max(cost["gpts"])
    if cost["multislice"] <= MULTISLICE_BUDGET and side <= MAX_MULTISLICE_GPTS:
        return "multislice", f"{lateral:.0f} Å cell, {side}² points, {cost['multislice']:.1e} flops: affordable"
    why = (
        f"multislice would need a {lateral:.0f} Å cell ({side}² points, {cost['multislice']:.1e} flops > budget "
        f"{MULTISLICE_BUDGET:.0e} or > {MAX_MULTISLICE_GPTS}² points) for the {probe.semiangle:g} mrad probe"
    )
    if spec.kind in ("li_metal", "cu", "li2o"):
        proxy = _proxy_probe(spec, probe, thickness)
        if proxy.semiangle > probe.semiangle:
            lat_p, _ = _multislice_box(spec, proxy, thickness)
            c = estimate_cost(proxy, ms, (lat_p, lat_p), t, 1)
            if c["multislice"] <= MULTISLICE_BUDGET and max(c["gpts"]) <= MAX_MULTISLICE_GPTS:
                return "disc_multislice", (
                    f"{why}; a laterally uniform crystal's non-overlapping disc intensities do not depend on the "
                    f"convergence, so they come from a {proxy.semiangle:g} mrad run ({lat_p:.0f} Å cell)"
                )
    return "kinematic", why


def resolve_method(spec: EntrySpec, probe, thickness: float, ms=None) -> str:
    """The method an entry is simulated with: ``spec.method`` unless it is ``"auto"``.

    ``"auto"``: vacuum and damage crystallites are analytic (kinematic); every other kind takes multislice
    when the cell the probe needs (:func:`simkit.nbed.required_extent` × 1.05, or the LiF crystal's box if
    larger) costs at most :data:`MULTISLICE_BUDGET` flops (:func:`simkit.nbed.estimate_cost`, one position) on
    at most :data:`MAX_MULTISLICE_GPTS` points a side. Otherwise oriented bulk crystals (Li, Cu, Li₂O) take
    ``"disc_multislice"`` — multislice with a wider probe (:data:`PROXY_SEMIANGLE`, or less where the zone's
    discs would overlap) whose disc intensities, independent of the convergence for non-overlapping discs of a
    laterally uniform crystal, are redrawn as discs of the probe's semi-angle — and LiF nanocrystals and
    amorphous regions kinematic (a crystal smaller than the probe, light elements). At 300 keV with the default
    settings (0.1 Å sampling, 2 Å slices): 2 mrad → multislice everywhere; 0.15 mrad → disc_multislice for
    the metals and the oxide, kinematic for LiF and the amorphous regions.

    Parameters
    ----------
    spec : EntrySpec
    probe : simkit.nbed.Probe
    thickness : float  [Å]
        Library column thickness.
    ms : simkit.nbed.Multislice or None
        Multislice settings that would be used (default 0.1 Å sampling, 2 Å slices, one phonon).

    Returns
    -------
    str
        ``"multislice"``, ``"disc_multislice"`` or ``"kinematic"``.
    """
    return _method_choice(spec, probe, thickness, ms)[0]


def _resolved(spec: EntrySpec, probe, thickness: float, ms=None) -> EntrySpec:
    """``spec`` with its method resolved (the resolved method enters the cache key)."""
    import dataclasses

    m = resolve_method(spec, probe, thickness, ms)
    return spec if m == spec.method else dataclasses.replace(spec, method=m)


# ----------------------------------------------------------------------------------------------------------
# kinematic crystals
# ----------------------------------------------------------------------------------------------------------
def _detector_corner(geometry: DetectorGeometry) -> float:
    """Largest |q| [Å⁻¹] of a detector pixel corner."""
    ny, nx = geometry.shape
    cy, cx = geometry.center
    return max(np.hypot(y - cy, x - cx) for y in (-0.5, ny - 0.5) for x in (-0.5, nx - 0.5)) * geometry.pixel_size


def _mean_u2(symbols) -> float:
    """Mean squared rms displacement per direction [Å²] of the atoms (Debye model at 100 K)."""
    from simkit.nbed import DEFAULT_DISPLACEMENT

    return float(np.mean([DEFAULT_DISPLACEMENT.get(sym, 0.06) ** 2 for sym in symbols]))


def _slab_spots(phase: str, zone_axis, probe, thickness: float, q_max: float):
    """Spot positions (q_y, q_x) [Å⁻¹] and two-beam intensities [fraction of incident] of an oriented slab."""
    from simkit.kinematic import kinematic_spots
    from structures import crystals

    unit = crystals.bulk(phase)
    rot = crystals.rotation_to_zone_axis(zone_axis)
    cell = unit.copy()
    cell.set_cell(unit.cell.array @ rot.T, scale_atoms=False)
    cell.positions = unit.positions @ rot.T
    t = float(thickness)
    t_probe = 1e-3  # Å: sinc² = 1 to 1e-7, so I/t_probe² = K² = (λγ|F|/Ω)²
    s_max = max(8.0 / t, 0.02)
    spots = kinematic_spots(
        cell,
        energy=probe.energy,
        q_max=q_max,
        lattice=cell.cell.array,
        excitation_error=s_max,
        thickness=t_probe,
        min_intensity=0.0,
    )
    k2 = spots.intensity / t_probe**2
    s = spots.excitation_error
    s_eff = np.sqrt(s**2 + k2 / np.pi**2)
    two_beam = k2 * np.sin(np.pi * t * s_eff) ** 2 / np.maximum(np.pi * s_eff, 1e-300) ** 2
    g2 = np.einsum("ij,ij->i", spots.g, spots.g)
    dw = np.exp(-4 * np.pi**2 * _mean_u2(unit.get_chemical_symbols()) * g2)
    return spots, two_beam * dw


def _kinematic_slab_pattern(spec: EntrySpec, probe, geometry: DetectorGeometry, thickness: float):
    from simkit.kinematic import render_discs

    phase = _CRYSTAL_PHASE[spec.kind]
    zone = tuple(spec.params.get("zone_axis", (0, 0, 1)))
    q_all = max(_detector_corner(geometry) + probe.disc_radius, 2.0)
    spots, inten = _slab_spots(phase, zone, probe, thickness, q_all)
    total = float(inten.sum())
    cap = 0.95
    if total > cap:  # many-beam saturation the two-beam bound does not give: keep the direct beam alive
        inten = inten * (cap / total)
        total = cap
    pat = render_discs(geometry, spots.q_xy, inten, probe.disc_radius)
    pat += _probe_geometry_direct(geometry, probe) * (1.0 - total)
    info = {
        "method": "kinematic",
        "model": "slab: two-beam spot intensities, discs of the probe semi-angle",
        "phase": phase,
        "zone_axis": list(zone),
        "n_reflections": int(len(inten)),
        "scattered_fraction": total,
    }
    return pat, info


def _zone_spots(phase: str, zone_axis, probe, thickness: float, q_max: float) -> np.ndarray:
    """(q_y, q_x) [Å⁻¹] of the direct beam (first) and the reflections of an oriented slab up to ``q_max``."""
    spots, inten = _slab_spots(phase, zone_axis, probe, thickness, q_max)
    q = spots.q_xy[inten > 1e-7 * max(float(inten.max(initial=0.0)), 1e-30)]
    # HOLZ points can project next to each other: keep one per 0.01 Å⁻¹
    if len(q):
        _, first = np.unique(np.round(q / 0.01).astype(np.int64), axis=0, return_index=True)
        q = q[np.sort(first)]
    return np.vstack([np.zeros((1, 2)), q])


def _min_separation(q: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    d, _ = cKDTree(q).query(q, k=2)
    return float(d[:, 1].min())


def _proxy_probe(spec: EntrySpec, probe, thickness: float):
    """The wide-aperture probe of a ``disc_multislice`` entry: ≤ :data:`PROXY_SEMIANGLE`, disc radius ≤ 0.4 × the
    smallest spot separation of the zone (discs well apart)."""
    import dataclasses

    zone = tuple(spec.params.get("zone_axis", (0, 0, 1)))
    q = _zone_spots(_CRYSTAL_PHASE[spec.kind], zone, probe, thickness, 1.0)
    a_max = q_to_mrad(0.4 * _min_separation(q), probe.energy)
    return dataclasses.replace(probe, semiangle=round(min(PROXY_SEMIANGLE, a_max), 4))


def _disc_multislice_pattern(spec: EntrySpec, probe, geometry: DetectorGeometry, thickness: float, ms=None):
    """Multislice with a wider probe, each disc's intensity redrawn as a disc of ``probe``'s semi-angle.

    For a laterally uniform crystal the integrated intensity of a non-overlapping CBED disc does not depend on
    the probe position, and it depends on the convergence only through the spread of excitation errors across
    the disc (α·g ≈ 10⁻³ Å⁻¹ at 2 mrad, below 1/t for t ≲ 600 Å). The diffuse background (frozen phonons) is kept:
    under each disc it is the mean of a ring around it.
    """
    from scipy.spatial import cKDTree

    from simkit.kinematic import render_discs
    from simkit.nbed import required_extent, simulate_pattern, to_detector

    ms = ms or _default_ms(probe, 1)
    proxy = _proxy_probe(spec, probe, thickness)
    lateral = float(required_extent(proxy)) * 1.05
    atoms = _structure(spec, thickness, lateral)
    pat = to_detector(simulate_pattern(atoms, proxy, ms, seed=spec.seed), geometry)
    zone = tuple(spec.params.get("zone_axis", (0, 0, 1)))
    q = _zone_spots(_CRYSTAL_PHASE[spec.kind], zone, probe, thickness, _detector_corner(geometry) + proxy.disc_radius)
    # integration radius: the proxy disc plus 1.5 simulation pixels (1/lateral) of soft edge, discs kept apart
    r_int = min(proxy.disc_radius + 1.5 / lateral, 0.5 * _min_separation(q))
    width = max(2.0 * geometry.pixel_size, 0.25 * proxy.disc_radius)
    qy, qx = geometry.q_grid()
    dist, idx = cKDTree(q).query(np.stack([qy.ravel(), qx.ravel()], 1))
    flat = pat.ravel().copy()
    inside = dist < r_int
    ring = (dist >= r_int) & (dist < r_int + width)
    n = len(q)
    bg = np.bincount(idx[ring], weights=flat[ring], minlength=n) / np.maximum(np.bincount(idx[ring], minlength=n), 1)
    i_g = np.bincount(idx[inside], weights=flat[inside] - bg[idx[inside]], minlength=n)
    flat[inside] = bg[idx[inside]]
    i_g = np.maximum(i_g, 0.0)
    out = flat.reshape(geometry.shape) + render_discs(geometry, q, i_g, probe.disc_radius)
    info = {
        "model": "disc intensities of a wide-aperture multislice run redrawn as discs of the probe semi-angle",
        "proxy_semiangle": proxy.semiangle,
        "n_atoms": len(atoms),
        "cell": np.diag(atoms.cell.array).tolist(),
        "zone_axis": list(zone),
        "n_discs": int(np.count_nonzero(i_g > 0)),
        "direct_fraction": float(i_g[0]),
        "integration_radius": float(r_int),
    }
    return out, info


def _nanocrystal_atoms(spec: EntrySpec, box=None):
    """The LiF crystal of a ``lif`` entry (the same draws as the multislice entry of the same seed)."""
    from structures import crystals

    p = spec.params
    d = float(p.get("diameter", 30.0))
    return crystals.nanocrystal(
        "LiF",
        d,
        orientation=p.get("orientation", "random"),
        f_vacancy=float(p.get("f_vacancy", 0.0)),
        box=box,
        rng=spec.seed,
    )


def _crystal_amplitude(atoms, q3: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Kinematic amplitude Σ_j f_j(|q|) e^(−2π²u_j²q²) e^(2πi q·r_j) [Å] at points ``q3`` (m, 3) [Å⁻¹]."""
    from simkit.kinematic import scattering_factor
    from simkit.nbed import DEFAULT_DISPLACEMENT

    pos = np.asarray(atoms.positions, dtype=np.float64)
    pos = (pos - pos.mean(0)).astype(np.float32)
    sym = np.asarray(atoms.get_chemical_symbols())
    out = np.zeros(len(q3), dtype=np.complex128)
    for s in np.unique(sym):
        r = pos[sym == s]
        u = DEFAULT_DISPLACEMENT.get(str(s), 0.06)
        for a in range(0, len(q3), chunk):
            q = q3[a : a + chunk]
            qn = np.linalg.norm(q, axis=1)
            ph = (2 * np.pi) * (q.astype(np.float32) @ r.T)
            amp = np.cos(ph).sum(1, dtype=np.float64) + 1j * np.sin(ph).sum(1, dtype=np.float64)
            out[a : a + chunk] += scattering_factor(str(s), qn) * np.exp(-2 * np.pi**2 * u**2 * qn**2) * amp
    return out


def _kinematic_nanocrystal_pattern(spec: EntrySpec, probe, geometry: DetectorGeometry):
    from scipy.signal import fftconvolve

    from simkit.kinematic import relativistic_factor, render_discs

    atoms = _nanocrystal_atoms(spec)
    d = float(spec.params.get("diameter", 30.0))
    a = float(atoms.info["a"])
    ps = geometry.pixel_size
    # sub-pixel sampling finer than a quarter of the shape transform's width 1/d
    o = max(1, int(np.ceil(ps / (0.25 / d))))
    sub = ((np.arange(o) + 0.5) / o - 0.5) * ps
    qy, qx = geometry.q_grid()
    full = (*geometry.shape, o, o)
    qy = np.broadcast_to(qy[..., None, None] + sub[:, None], full).reshape(-1)
    qx = np.broadcast_to(qx[..., None, None] + sub[None, :], full).reshape(-1)
    q2 = qy**2 + qx**2
    k0 = 1.0 / probe.wavelength
    q_cut = 0.5 * np.sqrt(3.0) / a  # half of |g_111|: outside the particle's small-angle lobe
    keep = q2 > q_cut**2
    qz = np.sqrt(k0**2 - q2[keep]) - k0  # on the Ewald sphere (beam along +z)
    amp = _crystal_amplitude(atoms, np.stack([qx[keep], qy[keep], qz], axis=1))
    dens = np.zeros(q2.size)
    gl = relativistic_factor(probe.energy) * probe.wavelength
    # uniform illumination 1/(π d²/4) [Å⁻²] × dσ/d²Q = γ²λ²|A|² [Å²·Å²] × pixel area ps² [Å⁻²]
    dens[keep] = gl**2 * np.abs(amp) ** 2 / (np.pi * d**2 / 4.0) * ps**2
    img = dens.reshape(*geometry.shape, o * o).mean(-1)
    # the probe's angular spread: incoherent convolution with its disc (intensity conserving)
    rp = int(np.ceil(probe.disc_radius / ps)) + 1
    kgeom = DetectorGeometry(shape=(2 * rp + 1, 2 * rp + 1), pixel_size=ps, center=(rp, rp))
    kern = render_discs(kgeom, np.zeros((1, 2)), np.ones(1), probe.disc_radius)
    img = np.maximum(fftconvolve(img, kern / kern.sum(), mode="same"), 0.0)
    total = float(img.sum())
    pat = img + _probe_geometry_direct(geometry, probe) * max(1.0 - total, 0.0)
    info = {
        "method": "kinematic",
        "model": "nanocrystal: kinematic amplitude on the Ewald sphere, uniform illumination of π d²/4, "
        "probe-disc convolution",
        "n_atoms": len(atoms),
        "orientation": np.asarray(atoms.info.get("orientation", np.eye(3))).tolist(),
        "f_vacancy": float(spec.params.get("f_vacancy", 0.0)),
        "diameter": d,
        "scattered_fraction": total,
        "oversample": o,
    }
    return pat, info


def _relaxed_source(spec: EntrySpec) -> str | None:
    """The shipped relaxed model an amorphous entry's builder uses by default (None: the builder packs)."""
    from structures import relax

    p = spec.params
    if spec.kind == "sei_type1" and "model" in p:
        return _type1_model(p)
    if spec.kind == "sei_type1":
        name = None if p.get("variant", "hce") != "hce" else "type1_default"
    elif spec.kind == "type2_matrix":
        name = "type2_matrix"
    elif spec.kind == "electrolyte":
        name = f"electrolyte_{p.get('electrolyte', 'hce')}"
    else:
        name = None
    return name if name in relax.LIBRARY and relax.model_seeds(name) else None


def _type1_model(p: Mapping) -> str:
    """The shipped Type 1 candidate an entry's ``params["model"]`` names (checked)."""
    from structures import relax

    name = str(p["model"])
    spec = relax.LIBRARY.get(name)
    if spec is None or spec.kind != "type1" or not relax.model_seeds(name):
        valid = sorted(n for n, m in relax.LIBRARY.items() if m.kind == "type1" and relax.model_seeds(n))
        raise ValueError(f"params['model']={name!r} is not a shipped Type 1 model; choose one of {valid}")
    return name


def _relaxed_debye(name: str, density: float | None, q: np.ndarray) -> tuple[np.ndarray, float, dict]:
    """Seed-averaged Debye I(Q) [Å² per atom] and number density [atoms/Å³] of a shipped relaxed model.

    Each seed is evaluated on its own periodic cell (minimum image, pair cut-off L/2, Lorch window): a repeated
    cell would add the image pairs at the lattice vectors of the repeat and show its reciprocal lattice |n|/L.
    The per-atom intensities are pooled over the seeds (atom-weighted mean), which lowers the seed noise; the
    number density is the pooled one (ΣN/ΣV), so the column's scattering scales with the material, not the box.
    """
    from simkit.kinematic import debye_intensity
    from structures import relax

    models = relax.relaxed_seeds(name, density=density)
    n = np.array([len(a) for a in models], dtype=float)
    iqs = np.stack([debye_intensity(a, q, periodic=True) for a in models])
    iq = np.sum(n[:, None] * iqs, axis=0) / n.sum()
    vol = sum(a.get_volume() for a in models)
    mass = sum(float(np.sum(a.get_masses())) for a in models)
    info = {
        "n_atoms": int(n.sum()),
        "density": mass / vol * 1.66053906660,
        "source": f"relaxed model {name} seeds {[int(a.info['seed']) for a in models]}: Debye I(Q) of each "
        f"untiled periodic cell (pair cut-off L/2 = {0.5 * min(min(a.cell.lengths()) for a in models):.2f} Å, "
        "minimum image, Lorch window), atom-weighted mean over the seeds",
    }
    return iq, float(n.sum() / vol), info


def _kinematic_pattern(spec: EntrySpec, probe, geometry: DetectorGeometry, thickness: float) -> tuple[np.ndarray, dict]:
    from simkit.damage import li2o_powder_profile
    from simkit.kinematic import debye_intensity, make_probe_convolution, relativistic_factor
    from structures import amorphous

    if spec.kind == "lif":
        return _kinematic_nanocrystal_pattern(spec, probe, geometry)
    if spec.kind in _CRYSTAL_PHASE:
        return _kinematic_slab_pattern(spec, probe, geometry, thickness)
    direct = _probe_geometry_direct(geometry, probe)
    if spec.kind == "vacuum":
        return direct, {"method": "kinematic", "what": "probe disc in vacuum"}
    qmax = np.hypot(*[max(c, s - 1 - c) for c, s in zip(geometry.center, geometry.shape)]) * geometry.pixel_size
    q = np.linspace(0.02, qmax + 2.5 * probe.disc_radius, 400)
    p = spec.params
    if spec.kind == "li2o_damage":
        iq = li2o_powder_profile(q, float(p["size"]))
        density = 2.013  # g/cm³, Li₂O
        mass = (2 * 6.941 + 15.999) / 3  # mean atomic mass [u]
        n_vol = density / (mass * 1.66053906660) * 1.0  # atoms/Å³ (1 u/Å³ = 1.6605 g/cm³)
        info = {"size": float(p["size"])}
    elif _relaxed_source(spec) is not None:
        # the builders' density defaults: Type 1 2.1 g/cm³, the others their relaxed density (an electrolyte
        # entry with "density" is a uniform dilation of its relaxed seeds)
        rho = _opt_float(p.get("density", 2.1 if spec.kind == "sei_type1" and "model" not in p else None))
        iq, n_vol, info = _relaxed_debye(_relaxed_source(spec), rho, q)
    else:
        n_at = int(p.get("n_atoms", 1500))
        if spec.kind == "sei_type1" and p.get("variant", "hce") != "hce":
            from structures.sei_variants import sei_variant

            atoms = sei_variant(p["variant"], n_atoms=n_at, density=float(p.get("density", 2.0)), rng=spec.seed)
        elif spec.kind == "sei_type1":
            atoms = amorphous.type1_sei(n_atoms=n_at, density=_opt_float(p.get("density", 2.1)), rng=spec.seed)
        elif spec.kind == "type2_matrix":
            atoms = amorphous.type2_matrix(n_atoms=n_at, density=_opt_float(p.get("density")), rng=spec.seed)
        elif spec.kind == "electrolyte":
            atoms = _electrolyte_atoms(p, spec.seed, n_atoms=n_at)
        else:  # pragma: no cover  (every kind has a kinematic path)
            raise ValueError(f"kind {spec.kind!r} has no kinematic path in the library; use method='multislice'")
        iq = debye_intensity(atoms, q, periodic=True)
        n_vol = len(atoms) / atoms.get_volume()
        info = {
            "n_atoms": len(atoms),
            "density": float(np.sum(atoms.get_masses()) / atoms.get_volume() * 1.66053906660),
            "source": str(atoms.info.get("source", "")),
        }
    conv = make_probe_convolution(q, semiangle=probe.semiangle, energy=probe.energy, geometry=geometry)
    lam = probe.wavelength
    scale = n_vol * thickness * (relativistic_factor(probe.energy) * lam) ** 2 * geometry.pixel_size**2
    scattered = conv.pattern(iq) * scale
    # total elastic scattering (all Q, kinematic): n_A γ²λ² ∫ I(Q) 2πQ dQ
    q_all = np.linspace(q[0], 6.0, 3000)
    tail = np.interp(q_all, q, iq, right=iq[-1]) * np.where(q_all > q[-1], (q[-1] / q_all) ** 4, 1.0)
    total = (
        n_vol
        * thickness
        * (relativistic_factor(probe.energy) * lam) ** 2
        * np.trapezoid(tail * 2 * np.pi * q_all, q_all)
    )
    info.update({"method": "kinematic", "scattered_fraction": float(total)})
    return scattered + direct * max(1.0 - float(total), 0.0), info


def build_entry(
    spec: EntrySpec, probe, geometry: DetectorGeometry, thickness: float, ms=None
) -> tuple[np.ndarray, dict]:
    """Simulate one entry (no cache).

    Parameters
    ----------
    spec : EntrySpec
    probe : simkit.nbed.Probe
    geometry : DetectorGeometry
    thickness : float  [Å]
        Column thickness of region entries (LiF nanocrystal entries are one crystal).
    ms : simkit.nbed.Multislice or None

    Returns
    -------
    (pattern, info) : ndarray [fraction of incident per pixel], dict
        ``info["method"]`` is the method used (``"auto"`` resolved by :func:`resolve_method`) and
        ``info["method_reason"]`` why.
    """
    import time

    t0 = time.perf_counter()
    method, reason = _method_choice(spec, probe, thickness, ms)
    pat, info = _BUILDERS[method](spec, probe, geometry, thickness, ms)
    info["method"] = method
    info["method_reason"] = reason
    info["seconds"] = time.perf_counter() - t0
    return np.asarray(pat, dtype=np.float32), _canonical(info)


def _multislice_pattern(spec: EntrySpec, probe, geometry: DetectorGeometry, thickness: float, ms=None):
    from simkit.nbed import required_extent, simulate_pattern, to_detector

    ms = ms or _default_ms(probe, 1)
    lateral = float(required_extent(probe)) * 1.05
    atoms = _structure(spec, thickness, lateral)
    sim = simulate_pattern(atoms, probe, ms, seed=spec.seed)
    info = {
        "method": "multislice",
        "n_atoms": len(atoms),
        "cell": np.diag(atoms.cell.array).tolist(),
        "orientation": np.asarray(atoms.info.get("orientation", np.eye(3))).tolist(),
        "f_vacancy": float(spec.params.get("f_vacancy", 0.0)),
    }
    return to_detector(sim, geometry), info


#: Entry builders by method: (spec, probe, geometry, thickness [Å], ms) -> (pattern, info).
_BUILDERS = {
    "multislice": _multislice_pattern,
    "disc_multislice": _disc_multislice_pattern,
    "kinematic": lambda spec, probe, geometry, thickness, ms=None: _kinematic_pattern(spec, probe, geometry, thickness),
}


def _atomic_write_entry(path: Path, pattern: np.ndarray, spec: EntrySpec, info: dict, key: str) -> None:
    from simkit.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("pattern", data=pattern)
        f.attrs["spec"] = json.dumps(spec.to_dict())
        f.attrs["info"] = json.dumps(info)
        f.attrs["key"] = key


def _read_entry(path: Path) -> tuple[np.ndarray, EntrySpec, dict]:
    with h5py.File(path, "r") as f:
        pat = f["pattern"][()]
        s = json.loads(f.attrs["spec"])
        info = json.loads(f.attrs["info"])
    return pat, EntrySpec(**s), info


def _task(spec, probe, geometry, thickness, ms, path, key, reason=None):
    """One library task: simulate with one inner thread, write atomically; returns the path.

    ``reason``: why "auto" chose ``spec.method`` (recorded in the entry's info)."""
    import numba
    from threadpoolctl import threadpool_limits

    if Path(path).exists():
        return str(path)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            pat, info = build_entry(spec, probe, geometry, thickness, ms)
    finally:
        numba.set_num_threads(old)
    if reason is not None:
        info["method_reason"] = reason
    _atomic_write_entry(Path(path), pat, spec, info, key)
    return str(path)


# ----------------------------------------------------------------------------------------------------------
# the library
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PatternLibrary:
    """Simulated patterns for every region kind of a scene, on one detector geometry.

    Attributes
    ----------
    geometry : DetectorGeometry
    probe : simkit.nbed.Probe
    thickness : float  [Å]
        Column thickness of the region entries.
    entries : tuple of LibraryEntry
    built : int
        Entries simulated by the call that made this library (0 when everything came from the cache).
    """

    geometry: DetectorGeometry
    probe: Any
    thickness: float
    entries: tuple[LibraryEntry, ...]
    built: int = 0

    def by_kind(self, kind: str) -> list[LibraryEntry]:
        """Entries of one kind (in build order); raises if there is none."""
        out = [e for e in self.entries if e.spec.kind == kind]
        if not out:
            have = sorted({e.spec.kind for e in self.entries})
            raise KeyError(f"the library has no {kind!r} entry (it has: {', '.join(have)}); add it to the specs")
        return out

    @property
    def kinds(self) -> tuple[str, ...]:
        """Entry kinds present."""
        return tuple(dict.fromkeys(e.spec.kind for e in self.entries))

    @property
    def vacuum(self) -> np.ndarray:
        """The probe in vacuum [fraction of incident per pixel]."""
        return self.by_kind("vacuum")[0].pattern


def build_library(
    specs: Sequence[EntrySpec] | str = "demo",
    *,
    probe=None,
    geometry: DetectorGeometry | None = None,
    thickness: float | None = None,
    ms=None,
    cache_dir: str | os.PathLike | None = None,
    client=None,
    scheduler_address: str | None = None,
    num_workers: int = 2,
    progress: bool = True,
    seed: int = 0,
) -> PatternLibrary:
    """Build (or load from the cache) a pattern library.

    Parameters
    ----------
    specs : sequence of EntrySpec or str
        Entries, or a preset name ("tiny", "demo", "full") for :func:`preset_specs`. ``"auto"`` methods are
        resolved for ``probe`` (:func:`resolve_method`); the library's entries carry the resolved specs.
    probe : simkit.nbed.Probe or None
        Default ``Probe()`` (300 keV, 2 mrad).
    geometry : DetectorGeometry or None
        Default: ``DetectorGeometry()`` (256² pixels of ``simkit.geometry.DEFAULT_PIXEL_SIZE`` Å⁻¹ centred at
        (128, 128)).
    thickness : float or None  [Å]
        Column thickness; default from the preset (60, 150 or 600 Å).
    ms : simkit.nbed.Multislice or None
        Multislice settings for multislice entries (default 0.1 Å sampling, 2 Å slices).
    cache_dir : path or None
        Default :func:`default_cache_dir`.
    client : dask.distributed.Client or None
        Run the missing entries on this cluster.
    scheduler_address : str or None
        Connect a client to this dask scheduler (needs the ``dist`` extra).
    num_workers : int
        Threads of the local scheduler (default 2 = the cores of the reference machine).
    progress : bool
        Show a progress bar.
    seed : int
        Base seed of preset structures.

    Returns
    -------
    PatternLibrary
    """
    import abtem
    import dask
    from tqdm.auto import tqdm

    from simkit.nbed import Probe

    preset = specs if isinstance(specs, str) else None
    if preset is not None:
        specs = preset_specs(preset, seed=seed)
        if thickness is None:
            thickness = PRESETS[preset]["thickness"]
        if ms is None:
            ms = _default_ms(probe or Probe(), PRESETS[preset]["n_phonons"])
    specs = list(specs)
    if not specs:
        raise ValueError("specs is empty: give at least one EntrySpec or a preset name")
    if not all(isinstance(s, EntrySpec) for s in specs):
        raise TypeError("specs must be EntrySpec objects or a preset name")
    probe = probe or Probe()
    geometry = geometry or DetectorGeometry()
    thickness = check_positive("thickness", thickness if thickness is not None else PRESETS["demo"]["thickness"], "Å")
    ms = ms or _default_ms(probe, 1)
    reasons = [_method_choice(s, probe, thickness, ms)[1] for s in specs]
    specs = [_resolved(s, probe, thickness, ms) for s in specs]  # "auto" → the method used (part of the key)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    keys = [entry_key(s, probe, geometry, thickness, ms) for s in specs]
    paths = [cache / f"{s.kind}-{k}.h5" for s, k in zip(specs, keys)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        tasks = [
            dask.delayed(_task, pure=False)(
                specs[i], probe, geometry, thickness, ms, str(paths[i]), keys[i], reasons[i]
            )
            for i in missing
        ]
        if scheduler_address is not None and client is None:
            from dask.distributed import Client

            client = Client(scheduler_address)
        bar = tqdm(total=len(tasks), desc="pattern library", unit="entry", disable=not progress)
        # the planner effort is set here, once, in the calling thread: each simulation also sets it (with other
        # abTEM settings) for its own duration, and two worker threads leaving their settings in the wrong order
        # would otherwise put the process default (FFTW_MEASURE, not reproducible) back under a running one
        with abtem.config.set({"fftw.planning_effort": ms.fft_planning}):
            try:
                if client is not None:
                    from dask.distributed import as_completed

                    futures = client.compute(tasks)
                    for fut in as_completed(futures):
                        fut.result()
                        bar.update(1)
                else:
                    # batches of num_workers so the bar moves; each task runs with one inner thread
                    for b in range(0, len(tasks), max(1, num_workers)):
                        chunk = tasks[b : b + max(1, num_workers)]
                        dask.compute(*chunk, scheduler="threads", num_workers=max(1, num_workers))
                        bar.update(len(chunk))
            finally:
                bar.close()
    entries = []
    for spec, key, path in zip(specs, keys, paths):
        pat, _, info = _read_entry(path)
        if pat.shape != geometry.shape:
            raise ValueError(f"cached entry {path} has shape {pat.shape}, expected {geometry.shape}; clear the cache")
        entries.append(LibraryEntry(spec=spec, pattern=pat, info=info, key=key))
    return PatternLibrary(
        geometry=geometry, probe=probe, thickness=thickness, entries=tuple(entries), built=len(missing)
    )
