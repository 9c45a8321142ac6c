"""Physical constants and unit conversions for simkit (the objects of :mod:`structures.checks`, re-exported).

Conventions (binding, see README): reciprocal space Q = 1/d [Å⁻¹] (no 2π); angles [mrad];
lengths [Å]; energies [eV]; dose [e/Å²]; densities [g/cm³]. One implementation lives in
:mod:`structures.checks` (the bottom layer, importable by all three packages); this module keeps the
``simkit.units`` names.
"""

from __future__ import annotations

from structures.checks import AVOGADRO as AVOGADRO
from structures.checks import ELECTRON_REST_ENERGY_EV as ELECTRON_REST_ENERGY_EV
from structures.checks import ELEMENTARY_CHARGE_C as ELEMENTARY_CHARGE_C
from structures.checks import ENERGY_RANGE_EV as ENERGY_RANGE_EV
from structures.checks import HC_EV_A as HC_EV_A
from structures.checks import check_energy as check_energy
from structures.checks import mrad_to_q as mrad_to_q
from structures.checks import q_to_mrad as q_to_mrad
from structures.checks import wavelength as wavelength
