"""Presets for the SEI each of the study's electrolytes leaves, and the study's special interface situations.

Every number here is a **hypothesis** (a model parameter to be tested against data), not a measured fact:

* ``"hce"`` — SEI of the high-concentration 4.6 m LiFSI + 2.3 m LiTFSI / DME electrolyte: the carbon-free
  Li–O–F–S Type 1 of :func:`structures.amorphous.type1_sei` (F⁻, O²⁻, S²⁻, SO₃²⁻, SO₄²⁻; anion-derived, as the
  study's EELS shows little C in Type 1) at 2.0 g/cm³ (``structures.scenes.TYPE1_DENSITY``), relaxed with the
  rigid-ion potential so that Li⁺ coordinates its anions — strong SRO (study: peaks ≈ 0.33 and 0.6 Å⁻¹).
* ``"lifsi_1m"`` — SEI of 1 M LiFSI / DME: at 1 M the Li⁺ solvation shell is mostly DME, so more solvent is
  reduced: an organic-rich mixture with methoxide (LiOCH₃-like, CH₃O⁻) and carbonate (CO₃²⁻) alongside the
  FSI⁻-derived F⁻, O²⁻, SO₃²⁻; lower density 1.7 g/cm³; relaxed as the HCE SEI. Expected: weaker, broader SRO.
* ``"lipf6_1m"`` — SEI of 1 M LiPF₆ / EC/DEC: the classic carbonate SEI, LiF (from PF₆⁻) plus Li₂CO₃ and
  ROCO₂Li (ethyl carbonate, EtOCO₂⁻, from DEC/EC reduction), a little Li₂O; 1.6 g/cm³. Expected: weakest SRO.

Relaxation uses :class:`structures.amorphous.RelaxSettings` defaults (Buckingham only for Li–O, Li–F, Li–S,
O–O, F–F, O–F; C- and H-containing pairs interact by Coulomb and the overlap wall only), so organic fragments
pack more randomly — part of the hypothesis of weaker order.

Special situations of the study (its Figures S3–S4 and the lift-out artefact):

* :func:`type1_between_grains` — Type 1 SEI between two Li grains (formed at ≈ 0 V vs Li/Li⁺, the most
  reducing environment): the HCE Type 1 preset, denser (2.1 g/cm³, hypothesis) because it is squeezed
  between grains.
* :func:`type2_at_voltage` — Type 2 formed at a controlled voltage above Li/Li⁺ (before Li nucleates): the
  Type 2 matrix of :func:`structures.amorphous.type2_matrix` plus LiF nanocrystal parameters; the LiF volume
  fraction rising as the voltage falls towards 0 V (hypothesis: linear from 0 at 1.5 V to 0.05 at 0 V).
* :func:`li2o_surface_layer` — Li₂O on both lamella surfaces of Li metal (oxidation in the FIB chamber), as a
  column through the lamella (:func:`structures.scenes.column`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ase import Atoms

from .amorphous import TYPE1_DEFAULT_UNITS, TYPE2_DEFAULT_UNITS, amorphous, type2_matrix
from .crystals import bulk
from .electrolyte_presets import study_units
from .scenes import column

__all__ = [
    "SEI_VARIANTS",
    "SEIVariant",
    "li2o_surface_layer",
    "sei_variant",
    "type1_between_grains",
    "type2_at_voltage",
    "type2_lif_fraction",
]


@dataclass(frozen=True, kw_only=True)
class SEIVariant:
    """An SEI preset (all values hypotheses).

    Parameters
    ----------
    name : str
    electrolyte : str
        Key of :data:`structures.electrolyte_presets.ELECTROLYTES` that leaves this SEI.
    units : dict
        Composition, fractions of units (Li⁺ added for neutrality).
    density : float  [g/cm³]
    relax : bool
        Rigid-ion relaxation after packing.
    region_kind : str
        Scene region kind that stands for it (``"sei_type1"``).
    note : str
        The hypothesis in words.
    """

    name: str
    electrolyte: str
    units: dict = field(default_factory=dict)
    density: float = 2.0
    relax: bool = True
    region_kind: str = "sei_type1"
    note: str = ""


#: The three electrolytes' SEI presets.
SEI_VARIANTS: dict = {
    "hce": SEIVariant(
        name="hce",
        electrolyte="hce",
        units=dict(TYPE1_DEFAULT_UNITS),
        density=2.0,
        note="anion-derived carbon-free Li–O–F–S Type 1 (strong SRO)",
    ),
    "lifsi_1m": SEIVariant(
        name="lifsi_1m",
        electrolyte="lifsi_1m",
        units={"F-": 0.25, "O^2-": 0.15, "SO3^2-": 0.10, "CH3O-": 0.30, "CO3^2-": 0.20},
        density=1.7,
        note="solvent-derived organic-rich (LiOCH3, Li2CO3) with FSI fragments, less dense (weaker SRO)",
    ),
    "lipf6_1m": SEIVariant(
        name="lipf6_1m",
        electrolyte="lipf6_1m",
        units={"F-": 0.30, "O^2-": 0.10, "CO3^2-": 0.25, "EtOCO2-": 0.35},
        density=1.6,
        note="carbonate SEI: LiF + Li2CO3 + ROCO2Li, least dense (weakest SRO)",
    ),
}


def sei_variant(name: str = "hce", *, n_atoms: int = 1500, cell=None, density=None, relax=None, rng=None) -> Atoms:
    """Amorphous model of the SEI a study electrolyte leaves.

    Parameters
    ----------
    name : {"hce", "lifsi_1m", "lipf6_1m"}
        Preset in :data:`SEI_VARIANTS`.
    n_atoms : int
        Target atoms (ignored when ``cell`` is given).
    cell : array-like or None  [Å]
        Box lengths.
    density : float or None  [g/cm³]
        Override of the preset density.
    relax : bool or None
        Override of the preset relaxation.
    rng : numpy.random.Generator, int or None
        Random generator or seed.

    Returns
    -------
    ase.Atoms
        As :func:`structures.amorphous.amorphous`; ``info["sei_variant"]`` = name, ``info["hypothesis"]``.
    """
    if name not in SEI_VARIANTS:
        raise ValueError(f"name={name!r}: SEI variants are {sorted(SEI_VARIANTS)}")
    v = SEI_VARIANTS[name]
    with study_units():  # CO3^2-, CH3O-, EtOCO2- known to the packing engine only while building
        atoms = amorphous(
            dict(v.units),
            v.density if density is None else float(density),
            cell=cell,
            n_atoms=None if cell is not None else n_atoms,
            relax=v.relax if relax is None else relax,
            rng=rng,
        )
    atoms.info.update({"sei_variant": name, "hypothesis": v.note, "electrolyte": v.electrolyte})
    return atoms


def type1_between_grains(*, n_atoms: int = 1500, density: float = 2.1, cell=None, rng=None) -> Atoms:
    """Type 1 SEI between two Li grains (HCE composition, denser: 2.1 g/cm³ — a hypothesis).

    Parameters
    ----------
    n_atoms : int
    density : float  [g/cm³]
    cell : array-like or None  [Å]
    rng : numpy.random.Generator, int or None

    Returns
    -------
    ase.Atoms
    """
    atoms = sei_variant("hce", n_atoms=n_atoms, cell=cell, density=density, rng=rng)
    atoms.info["situation"] = "type1_between_grains"
    return atoms


def type2_lif_fraction(voltage: float) -> float:
    """LiF volume fraction of Type 2 formed at ``voltage`` [V vs Li/Li⁺] (hypothesis: 0.05·(1 − V/1.5), ≥ 0).

    Parameters
    ----------
    voltage : float  [V vs Li/Li⁺]
        Must be in [0, 3].

    Returns
    -------
    float  [volume fraction]
    """
    v = float(voltage)
    if not (0.0 <= v <= 3.0):
        raise ValueError(f"voltage={voltage!r} V vs Li/Li+ must be in [0, 3] (Type 2 forms above Li plating)")
    return max(0.0, 0.05 * (1.0 - v / 1.5))


def type2_at_voltage(voltage: float = 0.5, *, n_atoms: int = 1500, cell=None, rng=None) -> Atoms:
    """Type 2 matrix formed at a controlled voltage above Li/Li⁺ (LiF fraction in ``info``).

    Parameters
    ----------
    voltage : float  [V vs Li/Li⁺]
    n_atoms : int
    cell : array-like or None  [Å]
    rng : numpy.random.Generator, int or None

    Returns
    -------
    ase.Atoms
        :func:`structures.amorphous.type2_matrix` (default composition
        :data:`structures.amorphous.TYPE2_DEFAULT_UNITS`); ``info["voltage"]`` [V], ``info["lif_volume_fraction"]``.
    """
    f = type2_lif_fraction(voltage)
    atoms = type2_matrix(n_atoms=n_atoms, units=dict(TYPE2_DEFAULT_UNITS), cell=cell, rng=rng)
    atoms.info.update({"situation": "type2_at_voltage", "voltage": float(voltage), "lif_volume_fraction": f})
    return atoms


def li2o_surface_layer(
    oxide_thickness: float = 15.0, *, lamella_thickness: float = 200.0, cell_xy=(20.0, 20.0)
) -> Atoms:
    """Li metal with Li₂O on both lamella surfaces (the lift-out oxidation artefact) as a beam-direction column.

    Parameters
    ----------
    oxide_thickness : float  [Å]
        Li₂O per surface (assumption: a few nm of native oxide).
    lamella_thickness : float  [Å]
    cell_xy : (float, float)  [Å]
        Lateral size of the column.

    Returns
    -------
    ase.Atoms
        :func:`structures.scenes.column` of Li₂O | Li | Li₂O (cryo lattice constants).
    """
    t, ox = float(lamella_thickness), float(oxide_thickness)
    if not (t > 0 and 0 < 2 * ox < t):
        raise ValueError(
            f"oxide_thickness={oxide_thickness!r} Å and lamella_thickness={lamella_thickness!r} Å "
            "need 0 < 2·oxide < lamella"
        )
    f = ox / t
    return column([(bulk("Li2O"), f), (bulk("Li"), 1 - 2 * f), (bulk("Li2O"), f)], t / 10.0, cell_xy=tuple(cell_xy))
