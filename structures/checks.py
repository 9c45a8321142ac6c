"""Argument checks and unit conversions shared by structures, simkit and fitting (the bottom layer).

Every check takes the argument's ``name`` first (used in the message), then its ``value`` (anything ``float()``
or ``numpy.asarray`` accepts) and, where it has one, the ``unit`` shown in brackets in the message (e.g. "Å⁻¹"). It
raises an error that names the argument, the bad value and what is valid: ``TypeError`` for a value of the wrong
kind, ``ValueError`` for a value out of range. Each returns the value converted (a Python float, an int or a
NumPy array), so a caller writes ``step = check_positive("step", step, "Å")`` and uses the result.

Unit conventions (binding across the packages): reciprocal space Q = 1/d [Å⁻¹] (no 2π); angles [mrad];
lengths [Å]; energies [eV]; dose [e/Å²]; densities [g/cm³]. The conversions between scattering angle and Q
live here so that no module writes ``angle * 1e-3 / wavelength`` on its own.

This module lives in ``structures`` because ``structures`` imports neither ``simkit`` nor ``fitting``: all three
packages can use it. ``simkit.units`` re-exports the physical constants and conversions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "AVOGADRO",
    "ELECTRON_REST_ENERGY_EV",
    "ELEMENTARY_CHARGE_C",
    "ENERGY_RANGE_EV",
    "HC_EV_A",
    "check_array",
    "check_cell",
    "check_energy",
    "check_finite",
    "check_in_range",
    "check_integer",
    "check_positive",
    "check_rng",
    "mrad_to_q",
    "q_to_mrad",
    "wavelength",
]

#: Planck constant times speed of light [eV·Å] (CODATA 2018).
HC_EV_A = 12398.419843320026
#: Electron rest energy m₀c² [eV] (CODATA 2018).
ELECTRON_REST_ENERGY_EV = 510998.95000
#: Elementary charge [C] (exact, SI 2019).
ELEMENTARY_CHARGE_C = 1.602176634e-19
#: Avogadro constant [1/mol] (exact, SI 2019).
AVOGADRO = 6.02214076e23

#: Beam energies accepted by the toolkit [eV].
ENERGY_RANGE_EV = (10e3, 1000e3)


def _unit(unit: str) -> str:
    return f" [{unit}]" if unit else ""


# ----------------------------------------------------------------------------------------------------------
# scalars
# ----------------------------------------------------------------------------------------------------------
def check_finite(name: str, value: Any, unit: str = "") -> float:
    """A finite real number.

    Parameters
    ----------
    name, value, unit : str, Any, str
        As in every check (module docstring); bools are refused (``True`` is not a length).

    Returns
    -------
    float

    Raises
    ------
    TypeError
        ``value`` is not a real number.
    ValueError
        ``value`` is NaN or infinite.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r}: expected a real number{_unit(unit)}, not a bool")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={value!r}: expected a real number{_unit(unit)}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r}: must be a finite number{_unit(unit)}")
    return v


def check_positive(name: str, value: Any, unit: str = "", *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``).

    Parameters
    ----------
    name, value, unit : str, Any, str
        As in every check (module docstring).
    allow_zero : bool
        Accept 0 (a non-negative quantity such as a defocus spread or a dark count).

    Returns
    -------
    float
    """
    v = check_finite(name, value, unit)
    if v < 0 or (v == 0 and not allow_zero):
        want = "a non-negative finite number (>= 0)" if allow_zero else "a positive finite number (> 0)"
        raise ValueError(f"{name}={value!r}: must be {want}{_unit(unit)}")
    return v


def check_in_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    unit: str = "",
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number inside [low, high] (ends open on request; None = unbounded on that side).

    Parameters
    ----------
    name, value : str, Any
        As in every check (module docstring).
    low, high : float or None
        Bounds in the unit of ``value``.
    unit : str
    low_open, high_open : bool
        Exclude the bound itself (e.g. a fraction in [0, 1): ``high=1, high_open=True``).

    Returns
    -------
    float
    """
    v = check_finite(name, value, unit)
    bad_low = low is not None and (v < low or (low_open and v == low))
    bad_high = high is not None and (v > high or (high_open and v == high))
    if bad_low or bad_high:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name}={value!r}: must lie in {lo}, {hi}{_unit(unit)}")
    return v


def check_integer(name: str, value: Any, minimum: int | None = None) -> int:
    """An integer (Python or NumPy, not a bool, not a float), optionally >= ``minimum``.

    Parameters
    ----------
    name : str
    value : Any
    minimum : int or None

    Returns
    -------
    int
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r}: expected an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return int(value)


def check_rng(rng: Any) -> tuple[np.random.Generator, int | None]:
    """A random generator from a Generator, an integer seed or None.

    Parameters
    ----------
    rng : numpy.random.Generator | int | None
        A generator is used as it is; an int seeds a new one; None draws fresh OS entropy.

    Returns
    -------
    (numpy.random.Generator, int or None)
        The generator and the seed it came from (None for a passed generator or for OS entropy).
    """
    if isinstance(rng, np.random.Generator):
        return rng, None
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_))):
        seed = None if rng is None else int(rng)
        return np.random.default_rng(seed), seed
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")


# ----------------------------------------------------------------------------------------------------------
# arrays
# ----------------------------------------------------------------------------------------------------------
def check_array(
    name: str,
    value: Any,
    unit: str = "",
    *,
    ndim: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    dtype=np.float64,
    finite: bool = True,
    low: float | None = None,
    low_open: bool = False,
    nonempty: bool = True,
) -> np.ndarray:
    """An array of numbers with a given dimension/shape and, optionally, finite values above a bound.

    Parameters
    ----------
    name, value, unit : str, array_like, str
        As in every check (module docstring).
    ndim : int or None
        Required number of dimensions.
    shape : tuple of (int or None) or None
        Required shape; None entries match any length.
    dtype : numpy dtype or None
        Converted to this type (None keeps the input's).
    finite : bool
        Refuse NaN and infinities.
    low : float or None
        Every value must be >= ``low`` (> with ``low_open``).
    low_open : bool
    nonempty : bool
        Refuse an array with no elements.

    Returns
    -------
    ndarray
    """
    try:
        a = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected an array of numbers{_unit(unit)}, got {type(value).__name__}") from None
    if nonempty and a.size == 0:
        raise ValueError(f"{name} is empty: give at least one value{_unit(unit)}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} has shape {a.shape}: expected {ndim} dimension(s)")
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape))):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} has shape {a.shape}: expected {want}")
    if finite or low is not None:
        ok = np.ones(a.shape, bool)
        if finite:
            ok &= np.isfinite(a)
        if low is not None:
            ok &= (a > low) if low_open else (a >= low)
        if not ok.all():
            bad = a[~ok].ravel()[:3].tolist()
            cond = "finite" if finite else ""
            if low is not None:
                cond += (" and " if cond else "") + (f"> {low:g}" if low_open else f">= {low:g}")
            raise ValueError(f"{name} contains {bad}: values must be {cond}{_unit(unit)}")
    return a


def check_cell(name: str, cell: Any) -> np.ndarray:
    """An orthorhombic simulation box: three positive lengths or a diagonal 3×3 matrix.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    cell : array_like, shape (3,) or (3, 3)  [Å]

    Returns
    -------
    ndarray, shape (3,)  [Å]
        The box lengths.
    """
    c = np.asarray(cell, dtype=float)
    if c.shape == (3, 3):
        if np.any(np.abs(c - np.diag(np.diag(c))) > 1e-9):
            raise ValueError(f"{name} must be orthorhombic (a diagonal 3×3 matrix or 3 lengths [Å]), got {cell!r}")
        c = np.diag(c)
    if c.shape != (3,) or not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"{name} must be 3 positive lengths [Å] or a diagonal 3×3 matrix, got {cell!r}")
    return c


# ----------------------------------------------------------------------------------------------------------
# beam energy and angle ↔ Q
# ----------------------------------------------------------------------------------------------------------
def check_energy(energy: float, name: str = "energy") -> float:
    """Validate a beam energy.

    Parameters
    ----------
    energy : float  [eV]
        Beam energy; must lie in 10–1000 keV.
    name : str
        Argument name used in the error message.

    Returns
    -------
    float  [eV]
    """
    e = float(energy)
    if not np.isfinite(e) or not (ENERGY_RANGE_EV[0] <= e <= ENERGY_RANGE_EV[1]):
        raise ValueError(
            f"{name}={energy!r} eV is outside the supported range 10e3–1000e3 eV "
            "(give the beam energy in eV, e.g. 300e3 for 300 kV)"
        )
    return e


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength.

    Parameters
    ----------
    energy : float  [eV]
        Beam energy (kinetic), 10–1000 keV.

    Returns
    -------
    float  [Å]
        λ = hc / sqrt(E (2 m₀c² + E)); 0.019687 Å at 300 keV.
    """
    e = check_energy(energy)
    return HC_EV_A / np.sqrt(e * (2.0 * ELECTRON_REST_ENERGY_EV + e))


def mrad_to_q(angle: float | np.ndarray, energy: float) -> float | np.ndarray:
    """Scattering angle to Q = 1/d.

    Parameters
    ----------
    angle : float or array  [mrad]
    energy : float  [eV]

    Returns
    -------
    float or array  [Å⁻¹]
        Q = θ/λ (small-angle form used throughout, θ in rad).
    """
    q = np.asarray(angle, dtype=float) * 1e-3 / wavelength(energy)
    return float(q) if q.ndim == 0 else q


def q_to_mrad(q: float | np.ndarray, energy: float) -> float | np.ndarray:
    """Q = 1/d to scattering angle.

    Parameters
    ----------
    q : float or array  [Å⁻¹]
    energy : float  [eV]

    Returns
    -------
    float or array  [mrad]
        θ = λ·Q (small-angle form).
    """
    a = np.asarray(q, dtype=float) * wavelength(energy) * 1e3
    return float(a) if a.ndim == 0 else a
