"""Physical constants and unit conversions shared by every module.

Conventions (binding, see README): reciprocal space Q = 1/d [Å⁻¹] (no 2π); angles [mrad];
lengths [Å]; energies [eV]; dose [e/Å²]; densities [g/cm³].
"""

from __future__ import annotations

import numpy as np

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
    """
    a = np.asarray(q, dtype=float) * wavelength(energy) * 1e3
    return float(a) if a.ndim == 0 else a
