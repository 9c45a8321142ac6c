"""Structure refinement: parameters → structure → simulated profile → likelihood, optimised by scipy.

One evaluation of the objective runs::

    params (dict, physical units) ──builder(params, rng)──▶ structure (ase.Atoms or anything)
        ──simulator(structure)──▶ profile (Component / RadialProfiles / array) ──objective(profile)──▶ float

and :func:`refine` minimises it over box-bounded parameters with a derivative-free scipy optimiser
(Nelder–Mead or Powell; the objective is noisy in the structure's random numbers, so gradients are not used).

- **Seeded**: with ``common_random_numbers=True`` (default) every evaluation gets a fresh
  ``numpy.random.default_rng(seed)`` — the same random stream for all parameter values, so neighbouring
  parameters give correlated structures and the objective is smooth in the parameters (a random-structure
  model otherwise adds seed noise of, e.g., ±0.004 Å⁻¹ to a 1000-atom SRO peak). With ``False`` each
  evaluation gets ``default_rng([seed, h])``, ``h`` a hash of the parameter values (independent structures).
  Either way the objective is a deterministic function of the parameters, which makes resumption exact.
- **Caching**: evaluations are cached by a hash of the parameter values (rounded to 12 significant digits).
- **Checkpoints**: after each new evaluation the full evaluation history is written to an HDF5 file
  atomically (``name.tmp``, flush + fsync, ``os.replace``). A refinement started with an existing checkpoint
  re-runs the (deterministic) optimiser from the start with the cache preloaded: it replays the recorded
  evaluations without recomputing them and continues where the interrupted run stopped, reaching the same
  result as an uninterrupted run.
- **Progress**: a tqdm bar over evaluations (``progress=False`` to silence).

Building blocks: :func:`likelihood_objective` (−log L of :func:`fitting.model.fit_profile` of a measured
profile against the simulated profile plus fixed components), :func:`peak_target_objective` (squared
deviations of SRO peak positions, by the project's one estimator :func:`simkit.peak_estimator.peak_position`, from
targets) and :func:`kinematic_simulator` (Debye I(Q) with electron scattering factors, convolved with the
probe through :mod:`simkit.radial`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from scipy.optimize import minimize

from fitting.model.optimiser import at_bound, inverse_information
from simkit.results import ResultMixin

__all__ = [
    "Parameter",
    "RefineResult",
    "kinematic_simulator",
    "likelihood_objective",
    "peak_target_objective",
    "refine",
]

_CHECKPOINT_FORMAT = "sei-send refine checkpoint v1"
_METHODS = ("Nelder-Mead", "Powell")
#: What the objective is, for uncertainties: −log L (information = Hessian) or χ² = −2 log L (information = ½ H).
UNCERTAINTY_KINDS = {"loglike": 1.0, "chi2": 0.5}


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One refined parameter.

    Parameters
    ----------
    name : str
        Key under which the builder receives the value (e.g. ``"density"``).
    start : float  [unit]
    lower, upper : float  [unit]
        Box bounds (finite).
    unit : str
        For reports, e.g. ``"g/cm³"``, ``"Å"``, ``"1"``.
    """

    name: str
    start: float
    lower: float
    upper: float
    unit: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name={self.name!r}: give a non-empty str")
        lo, hi, x0 = float(self.lower), float(self.upper), float(self.start)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(
                f"parameter {self.name!r}: bounds ({self.lower}, {self.upper}) must be finite, lower < upper"
            )
        if not lo <= x0 <= hi:
            raise ValueError(f"parameter {self.name!r}: start={self.start} lies outside [{lo}, {hi}] {self.unit}")


@dataclass(frozen=True, kw_only=True, eq=False)
class RefineResult(ResultMixin):
    """Result of :func:`refine`.

    Attributes
    ----------
    names : tuple of str
    x : ndarray  [parameter units]
        Best parameters found.
    fun : float
        Objective at ``x``.
    history_x : ndarray, shape (n_eval, P)
        Every distinct evaluated parameter vector, in order of first evaluation.
    history_f : ndarray, shape (n_eval,)
    n_evaluations : int
        Objective calls made by the optimiser (cached or not).
    n_computed : int
        Evaluations actually computed in this run (builder + simulator called).
    resumed : bool
        A checkpoint was loaded.
    converged : bool
        The optimiser reported success (tolerances met before ``max_evaluations``).
    message : str
    seed : int
    checkpoint : str or None
    method : str
    uncertainty : ndarray or None  [parameter units]
        1σ per parameter from the inverse information (finite-difference Hessian of the objective at ``x``,
        see ``refine(uncertainty=...)``); None when not requested.
    at_bound : ndarray of bool or None
        Parameters that ended on a bound of their box.
    units : tuple of str
    """

    names: tuple[str, ...]
    x: np.ndarray
    fun: float
    history_x: np.ndarray
    history_f: np.ndarray
    n_evaluations: int
    n_computed: int
    resumed: bool
    converged: bool
    message: str
    seed: int
    checkpoint: str | None
    method: str
    extra: dict = field(default_factory=dict)
    uncertainty: np.ndarray | None = None
    at_bound: np.ndarray | None = None
    units: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, float]:
        """Best parameters by name."""
        return {n: float(v) for n, v in zip(self.names, self.x)}

    @property
    def ok(self) -> bool:
        """Same as ``converged``."""
        return bool(self.converged)

    @property
    def values(self) -> dict[str, float]:
        """Same as ``params``."""
        return self.params

    @property
    def stderr(self) -> dict[str, float]:
        """1σ by name (NaN when ``refine`` was not asked for uncertainties)."""
        u = np.full(len(self.names), np.nan) if self.uncertainty is None else self.uncertainty
        return {n: float(v) for n, v in zip(self.names, u)}

    @property
    def warnings(self) -> tuple[str, ...]:
        """Not converged, parameters on a bound, no uncertainties — in words."""
        out = [] if self.converged else [f"not converged: {self.message}"]
        if self.at_bound is not None and np.any(self.at_bound):
            b = [n for n, f in zip(self.names, self.at_bound) if f]
            out.append(f"on a bound of its box (1σ is not a Gaussian interval): {', '.join(b)}")
        if self.uncertainty is None:
            out.append("no uncertainties (refine(uncertainty=...) not requested)")
        return tuple(out)

    @property
    def _units(self) -> dict[str, str]:
        return dict(zip(self.names, self.units))


# ----------------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------------
def _key(x: np.ndarray) -> str:
    s = ",".join(f"{v:.12g}" for v in np.asarray(x, float))
    return hashlib.sha256(s.encode()).hexdigest()


def _seed_for(seed: int, x: np.ndarray) -> np.random.Generator:
    h = int(_key(x)[:15], 16)
    return np.random.default_rng([int(seed), h])


def _write_checkpoint(path: Path, meta: dict, xs: list, fs: list) -> None:
    from simkit.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = _CHECKPOINT_FORMAT
        for k, v in meta.items():
            f.attrs[k] = v
        f.create_dataset("x", data=np.asarray(xs, float).reshape(len(xs), len(meta["names"])))
        f.create_dataset("f", data=np.asarray(fs, float))


def _read_checkpoint(path: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint={str(path)!r} is not a refinement checkpoint ({_CHECKPOINT_FORMAT})")
        for k, v in meta.items():
            stored = f.attrs.get(k)
            same = np.array_equal(np.asarray(stored), np.asarray(v)) if stored is not None else False
            if not same:
                raise ValueError(
                    f"checkpoint={str(path)!r} was written for {k}={stored!r}, this refinement has {k}={v!r}; "
                    "use another checkpoint path or the original settings"
                )
        return np.asarray(f["x"][...], float), np.asarray(f["f"][...], float)


# ----------------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------------
def refine(
    parameters: Sequence[Parameter],
    *,
    builder: Callable[[dict, np.random.Generator], object],
    objective: Callable[[object], float],
    simulator: Callable[[object], object] | None = None,
    method: str = "Nelder-Mead",
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    max_evaluations: int = 200,
    xtol: float = 1e-3,
    ftol: float = 1e-3,
    progress: bool = True,
    common_random_numbers: bool = True,
    uncertainty: str | None = None,
    hessian_step: float = 0.05,
) -> RefineResult:
    """Minimise ``objective(simulator(builder(params, rng)))`` over box-bounded parameters.

    Parameters
    ----------
    parameters : sequence of Parameter
    builder : callable (params: dict[str, float], rng: numpy.random.Generator) → structure
        E.g. a wrapper of ``structures.amorphous.type1_sei(density=params["density"], rng=rng, ...)``.
    objective : callable (profile) → float
        Value to minimise (e.g. :func:`likelihood_objective`, :func:`peak_target_objective`); non-finite values
        are treated as +inf.
    simulator : callable (structure) → profile, or None
        ``None`` → identity (the builder returns the profile itself); the kinematic path is
        :func:`kinematic_simulator`.
    method : {"Nelder-Mead", "Powell"}
    seed : int
        Root seed (see ``common_random_numbers``).
    checkpoint : path or None
        HDF5 file; loaded when it exists (resume), rewritten atomically after every new evaluation.
    max_evaluations : int
        Objective calls allowed to the optimiser (cached ones included, so that a resumed run follows the same
        path).
    xtol : float
        Convergence tolerance on the parameters, as a fraction of each parameter's range.
    ftol : float  [objective units]
        Convergence tolerance on the objective.
    progress : bool
        Show a tqdm progress bar.
    common_random_numbers : bool
        True: ``default_rng(seed)`` for every evaluation; False: ``default_rng([seed, hash(params)])``.
    uncertainty : {"loglike", "chi2", None}
        Also estimate 1σ uncertainties at the optimum, with the convention of every fit in
        :mod:`fitting.model.optimiser`: inverse information over the parameters not on a bound, a parameter on a
        bound flagged. The information is the central-difference Hessian of the objective (``"loglike"``: the
        objective is −log L, e.g. :func:`likelihood_objective`) or half of it (``"chi2"``: a χ² such as
        :func:`peak_target_objective`). Costs 2P + 2P(P − 1) further evaluations (cached and checkpointed like
        the others). None: no uncertainties.
    hessian_step : float
        Step of the finite differences as a fraction of each parameter's range (with common random numbers
        the objective is smooth, so a step of a few % resolves its curvature without seed noise).

    Returns
    -------
    RefineResult
    """
    params = list(parameters)
    if not params:
        raise ValueError("parameters is empty: give at least one Parameter to refine")
    if not all(isinstance(p, Parameter) for p in params):
        raise TypeError("parameters must be Parameter instances")
    names = tuple(p.name for p in params)
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names {names} are not unique")
    if method not in _METHODS:
        raise ValueError(f"method={method!r}: valid are {_METHODS} (derivative-free; the objective is simulated)")
    if int(max_evaluations) < 1:
        raise ValueError(f"max_evaluations={max_evaluations!r} must be ≥ 1")
    if not callable(builder) or not callable(objective) or (simulator is not None and not callable(simulator)):
        raise TypeError("builder, objective and simulator must be callables")
    if uncertainty is not None and uncertainty not in UNCERTAINTY_KINDS:
        raise ValueError(f"uncertainty={uncertainty!r}: valid are {list(UNCERTAINTY_KINDS)} or None")
    if not (isinstance(hessian_step, (int, float)) and 0 < hessian_step <= 0.25):
        raise ValueError(f"hessian_step={hessian_step!r}: give a fraction of the parameter range in (0, 0.25]")
    lo = np.array([p.lower for p in params], float)
    hi = np.array([p.upper for p in params], float)
    x0 = np.array([p.start for p in params], float)
    span = hi - lo
    meta = {
        "names": np.array(names, dtype=h5py.string_dtype()),
        "lower": lo,
        "upper": hi,
        "start": x0,
        "seed": int(seed),
        "method": method,
        "common_random_numbers": int(bool(common_random_numbers)),
    }

    cache: dict[str, float] = {}
    hist_x: list[np.ndarray] = []
    hist_f: list[float] = []
    path = Path(checkpoint) if checkpoint is not None else None
    resumed = False
    if path is not None and path.exists():
        xs, fs = _read_checkpoint(path, meta)
        for xv, fv in zip(xs, fs):
            cache[_key(xv)] = float(fv)
            hist_x.append(xv)
            hist_f.append(float(fv))
        resumed = True

    from tqdm.auto import tqdm

    bar = tqdm(total=int(max_evaluations), desc="refine", disable=not progress, leave=False)
    counters = {"calls": 0, "computed": 0}

    def evaluate(u: np.ndarray) -> float:
        x = lo + np.clip(u, 0.0, 1.0) * span
        x = np.array([float(f"{v:.12g}") for v in x])
        counters["calls"] += 1
        bar.update(1)
        k = _key(x)
        if k in cache:
            return cache[k]
        rng = np.random.default_rng(int(seed)) if common_random_numbers else _seed_for(seed, x)
        structure = builder(dict(zip(names, x.tolist())), rng)
        profile = structure if simulator is None else simulator(structure)
        val = float(objective(profile))
        if not np.isfinite(val):
            val = np.inf
        counters["computed"] += 1
        cache[k] = val
        hist_x.append(x)
        hist_f.append(val)
        if path is not None:
            _write_checkpoint(path, meta, hist_x, hist_f)
        bar.set_postfix(best=f"{min(hist_f):.6g}")
        return val

    u0 = (x0 - lo) / span
    bounds = [(0.0, 1.0)] * len(params)
    if method == "Nelder-Mead":
        # initial simplex: 10 % of each range (scipy's default 5 % of the value is tiny near 0)
        sim = [u0]
        for i in range(len(params)):
            v = u0.copy()
            v[i] = v[i] + 0.1 if v[i] + 0.1 <= 1.0 else v[i] - 0.1
            sim.append(v)
        opts = {"maxfev": int(max_evaluations), "xatol": xtol, "fatol": ftol, "initial_simplex": np.array(sim)}
    else:
        opts = {"maxfev": int(max_evaluations), "xtol": xtol, "ftol": ftol}
    err = None
    try:
        res = minimize(evaluate, u0, method=method, bounds=bounds, options=opts)
        ubest = np.clip(res.x, 0.0, 1.0)
        xbest = np.array([float(f"{v:.12g}") for v in lo + ubest * span])
        bound = at_bound(xbest, lo, hi)
        if uncertainty is not None:
            err = _stderr(evaluate, ubest, span, bound, float(hessian_step), UNCERTAINTY_KINDS[uncertainty])
    finally:
        bar.close()
    return RefineResult(
        names=names,
        x=xbest,
        fun=float(res.fun),
        history_x=np.array(hist_x, float).reshape(len(hist_x), len(names)),
        history_f=np.array(hist_f, float),
        n_evaluations=counters["calls"],
        n_computed=counters["computed"],
        resumed=resumed,
        converged=bool(res.success),
        message=str(res.message),
        seed=int(seed),
        checkpoint=None if path is None else str(path),
        method=method,
        uncertainty=err,
        at_bound=bound,
        units=tuple(p.unit for p in params),
    )


def _stderr(evaluate, u, span, bound, h, factor) -> np.ndarray:
    """1σ of the parameters from the central-difference Hessian of the objective in unit coordinates at ``u``
    (stencil moved inside [0, 1] where ``u`` is closer than ``h`` to an edge), times ``factor`` → information,
    inverted with :func:`fitting.model.optimiser.inverse_information`."""
    P = u.size
    c = np.clip(u, h, 1.0 - h)

    def f(*shifts):
        v = c.copy()
        for i, d in shifts:
            v[i] += d
        return evaluate(v)

    f0 = f()
    H = np.empty((P, P))
    for i in range(P):
        H[i, i] = (f((i, h)) - 2.0 * f0 + f((i, -h))) / h**2
        for j in range(i):
            H[i, j] = H[j, i] = (f((i, h), (j, h)) - f((i, h), (j, -h)) - f((i, -h), (j, h)) + f((i, -h), (j, -h))) / (
                4.0 * h * h
            )
    info = factor * H / np.outer(span, span)
    if not np.all(np.isfinite(info)):
        return np.full(P, np.nan)
    err, _, _ = inverse_information(info[None], np.asarray(bound, bool)[None])
    return err[0]


# ----------------------------------------------------------------------------------------------------------------
# objectives and the default simulator
# ----------------------------------------------------------------------------------------------------------------
def likelihood_objective(
    measured, *, name: str = "model", fixed_components: Mapping | None = None, **fit_kwargs
) -> Callable[[object], float]:
    """−log L of a measured profile against the simulated profile (plus fixed components) after a
    :func:`fitting.model.fit_profile` of scales, Q scale, blur and background.

    Parameters
    ----------
    measured : RadialProfiles, ScanProfiles or tuple (q [Å⁻¹], counts[, exposure [pixels]])
    name : str
        Component name given to the simulated profile.
    fixed_components : Mapping or None
        Other components fitted alongside (e.g. a LiF nanocrystal profile).
    **fit_kwargs
        Passed to ``fit_profile`` (``q_range``, ``background``, ``resample`` …).

    Returns
    -------
    callable (profile) → float
        Non-converged fits return +inf (never a silently bad value).
    """
    from fitting.model import fit_profile
    from fitting.profiles import measured_profile

    q, y, e = measured_profile(measured)
    fixed = dict(fixed_components or {})

    def objective(profile) -> float:
        fit = fit_profile(q, y, {name: profile, **fixed}, exposure=e, **fit_kwargs)
        return -fit.loglike if fit.converged else np.inf

    return objective


def peak_target_objective(targets: Sequence[tuple[float, float, float]], *, n: float = 1.0) -> Callable:
    """Σ ((Q_peak − Q_target)/tolerance)² over SRO peaks, with Q_peak from :func:`simkit.peak_estimator.peak_position`
    (the maximum of a local fit to I·Qⁿ of the probe-convolved profile — the project's one peak estimator).

    Parameters
    ----------
    targets : sequence of (q_target [Å⁻¹], half_window [Å⁻¹], tolerance [Å⁻¹])
        E.g. ``[(0.33, 0.06, 0.003), (0.60, 0.08, 0.01)]`` for SEI Type 1.
    n : float
        I·Qⁿ weighting (the study: n = 1).

    Returns
    -------
    callable (profile) → float
        Profile: Component / RadialProfiles (``q``, ``mean``) or (q, I). A peak not found → +inf.
    """
    from simkit.peak_estimator import peak_position

    targets = [(float(a), float(b), float(c)) for a, b, c in targets]
    if not targets:
        raise ValueError("targets is empty: give (q_target, half_window, tolerance) tuples [Å⁻¹]")

    def objective(profile) -> float:
        q, it = _profile_arrays(profile)
        total = 0.0
        for qt, hw, tol in targets:
            fit = peak_position(q, it, (qt - hw, qt + hw), n=n)
            if not bool(np.asarray(fit.ok)):
                return np.inf
            total += ((float(fit.position) - qt) / tol) ** 2
        return total

    return objective


def _profile_arrays(profile) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(profile, "intensity") and hasattr(profile, "q"):
        return np.asarray(profile.q, float), np.asarray(profile.intensity, float)
    if hasattr(profile, "mean") and hasattr(profile, "q"):
        return np.asarray(profile.q, float), np.asarray(profile.mean, float)
    if isinstance(profile, tuple) and len(profile) == 2:
        return np.asarray(profile[0], float), np.asarray(profile[1], float)
    raise TypeError(f"profile={type(profile).__name__}: give a Component, RadialProfiles or (q, I)")


def kinematic_simulator(q, *, semiangle: float, energy: float, geometry=None, parametrization: str = "lobato"):
    """The default simulator: Debye I(Q) with electron scattering factors, convolved with the probe and
    integrated through :mod:`simkit.radial` (``simkit.kinematic.probe_convolve``, plan built once).

    Parameters
    ----------
    q : array  [Å⁻¹]
        Grid of the Debye sum (≥ 0, increasing; should extend past the fitted range by the disc radius).
    semiangle : float  [mrad]
    energy : float  [eV]
    geometry : DetectorGeometry or None
        The data's detector geometry.
    parametrization : str
        Electron scattering factors (abTEM names).

    Returns
    -------
    callable (ase.Atoms) → fitting.model.Component
    """
    from fitting.model import Component
    from simkit import kinematic

    q = np.asarray(q, float)
    plan = kinematic.make_probe_convolution(q, semiangle=semiangle, energy=energy, geometry=geometry)

    def simulate(atoms) -> Component:
        iq = kinematic.debye_intensity(atoms, q, parametrization=parametrization)
        prof = kinematic.probe_convolve(q, iq, semiangle=semiangle, energy=energy, geometry=geometry, plan=plan)
        return Component(
            name="kinematic",
            q=np.asarray(prof.q, float),
            intensity=np.asarray(prof.mean, float),
            source=f"Debye ({parametrization}) ⊗ probe {semiangle} mrad",
        )

    return simulate
