"""Physical constants and unit conversions for simkit (the objects of :mod:`structures.checks`, re-exported).

Conventions (binding, see README): reciprocal space Q = 1/d [Å⁻¹] (no 2π); angles [mrad];
lengths [Å]; energies [eV]; dose [e/Å²]; densities [g/cm³]. One implementation lives in
:mod:`structures.checks` (the bottom layer, importable by all three packages); this module keeps the
``simkit.units`` names.
"""

from __future__ import annotations

from structures.checks import (
    AVOGADRO,
    ELECTRON_REST_ENERGY_EV,
    ELEMENTARY_CHARGE_C,
    ENERGY_RANGE_EV,
    HC_EV_A,
    check_energy,
    mrad_to_q,
    q_to_mrad,
    wavelength,
)

__all__ = [
    "AVOGADRO",
    "ELECTRON_REST_ENERGY_EV",
    "ELEMENTARY_CHARGE_C",
    "ENERGY_RANGE_EV",
    "HC_EV_A",
    "check_energy",
    "mrad_to_q",
    "q_to_mrad",
    "wavelength",
]
