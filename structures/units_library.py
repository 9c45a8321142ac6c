"""Geometries of the building units (ions, rigid polyatomic anions, solvent molecules).

Every unit is a rigid body: element symbols, Cartesian coordinates [Å] centred on their centroid, the total
charge [e] and per-site partial charges [e] used only by the optional physical relaxation of
:mod:`structures.amorphous`. Geometries are built from internal coordinates (bond lengths [Å], angles [deg],
dihedrals [deg]) with the natural-extension-reference-frame construction, so that every number is a readable
bond length or angle with its source next to it.

Sources of geometry (values rounded to 0.01 Å / 0.5°; the diffraction models need ~1 % accuracy):

* SO₄²⁻ — regular tetrahedron, S–O 1.49 Å. Crystal sulfates average ⟨S–O⟩ = 1.473 Å (Hawthorne, Krivovichev &
  Burns 2000, Rev. Mineral. Geochem. 40, 1); isolated/solvated sulfate in DFT is ≈ 1.49–1.50 Å. We take 1.49 Å.
* SO₃²⁻ — trigonal pyramid, S–O 1.51 Å, O–S–O 105° (sulfite salts such as Na₂SO₃ have S–O ≈ 1.50–1.52 Å and
  O–S–O ≈ 104–106°; e.g. Larsson & Kierkegaard 1969, Acta Chem. Scand. 23, 2253).
* FSI⁻ = N(SO₂F)₂⁻ — S–N 1.57 Å, S–O 1.43 Å, S–F 1.57 Å, S–N–S 123°, N–S–O 108°, N–S–F 103°, O–S–O 121°,
  C₂ (trans) conformer with F–S–N–S dihedrals of 90°; these are the values of crystalline alkali-metal FSI salts
  and gas-phase DFT
  (e.g. K[FSI], Beran et al. 2006, Polyhedron 25, 1292; LiFSI conformers, Johansson et al.).
* TFSI⁻ = N(SO₂CF₃)₂⁻ — S–N 1.57 Å, S–O 1.43 Å, S–C 1.83 Å, C–F 1.33 Å, S–N–S 125°, N–S–C 103°, O–S–O 121°, S–C–F 110°,
  C₂ (trans) conformer (LiTFSI crystal structure, Nowinski, Lightfoot & Bruce 1994, J. Mater. Chem. 4, 1579).
* SO₂F⁻ (fluorosulfinate, an FSI⁻ reduction fragment) — pyramidal, S–O 1.46 Å, S–F 1.65 Å, O–S–O 112°,
  O–S–F 101° (typical of fluorosulfinate salts / DFT; hypothesis-grade).
* NSO₂F²⁻ (imidosulfuryl fluoride dianion; an N–S cleavage fragment of FSI⁻, closed-shell with formal oxidation
  states N³⁻ S⁶⁺ O²⁻ F⁻, hence −2; the brief's "NSO₂F⁻" would need an extra electron or proton) — tetrahedral S,
  S–N 1.52 Å (between single 1.57 and double 1.45), S–O 1.45 Å, S–F 1.60 Å, all angles at S ≈ tetrahedral
  (hypothesis-grade geometry from standard S(VI) bond lengths).
* DME (1,2-dimethoxyethane, C₄H₁₀O₂) — all-trans (TTT) conformer; C–O 1.416 Å, C–C 1.513 Å, C–H 1.09 Å
  (Allen et al. 1987, J. Chem. Soc. Perkin Trans. 2, S1: ether C–O, C(sp³)–C(sp³), neutron C–H), C–O–C 112°,
  O–C–C 109°, H angles tetrahedral 109.5°. DME is not in ASE's g2 set, so it is built here; conformational
  disorder (TGT in Li⁺ solvates) is ignored.

Partial charges for the relaxation (hypotheses, documented so they can be changed): monatomic ions carry formal
charges; SO₄²⁻ S +2.0 / O −1.0; SO₃²⁻ S +1.0 / O −1.0; SO₂F⁻ S +0.6 / O −0.6 / F −0.4; NSO₂F²⁻ N −1.0 / S +1.0 /
O −0.6 / F −0.8; TFSI⁻ the CL&P force-field charges (Canongia Lopes & Pádua 2004, J. Phys. Chem. B 108, 16893:
N −0.66, S +1.02, O −0.53, C +0.35, F −0.16); FSI⁻ the same N/S/O charges with F −0.13 for neutrality; DME 0
(it is never relaxed with charges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Unit", "UNITS", "ALIASES", "get_unit", "make_unit", "unit_names", "zmatrix_to_xyz"]


@dataclass(frozen=True, kw_only=True)
class Unit:
    """A rigid building unit.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"SO4^2-"``.
    symbols : tuple of str
        Element symbols of the sites.
    positions : numpy.ndarray  [Å]
        Site coordinates, shape (n, 3), centroid at the origin.
    charge : float  [e]
        Total formal charge.
    site_charges : tuple of float  [e]
        Partial charges per site used by the relaxation (sum = charge).
    bonds : tuple of (int, int)
        Covalent bonds (site index pairs), used to check that units stay intact.
    source : str
        Where the geometry comes from.
    """

    name: str
    symbols: tuple
    positions: np.ndarray
    charge: float
    site_charges: tuple
    bonds: tuple
    source: str

    @property
    def n_atoms(self) -> int:
        """Number of sites."""
        return len(self.symbols)

    @property
    def mass(self) -> float:
        """Mass [g/mol] (ASE standard atomic weights)."""
        from ase.data import atomic_masses, atomic_numbers

        return float(sum(atomic_masses[atomic_numbers[s]] for s in self.symbols))


def zmatrix_to_xyz(zmat: list) -> np.ndarray:
    """Cartesian coordinates from a Z-matrix (natural extension reference frame).

    Parameters
    ----------
    zmat : list of tuple
        Row k is ``()`` for the first atom, ``(i, r)`` for the second, ``(i, r, j, angle)`` for the third and
        ``(i, r, j, angle, l, dihedral)`` afterwards: atom k is bonded to atom i at distance r [Å], the angle
        k–i–j is ``angle`` [deg] and the dihedral k–i–j–l is ``dihedral`` [deg].

    Returns
    -------
    numpy.ndarray  [Å]
        Coordinates, shape (n, 3).
    """
    n = len(zmat)
    x = np.zeros((n, 3))
    for k, row in enumerate(zmat):
        if k == 0:
            continue
        if k == 1:
            i, r = row
            x[k] = x[i] + np.array([0.0, 0.0, r])
            continue
        if k == 2 or len(row) == 4:
            i, r, j, ang = row[:4]
            # place in the xz plane
            u = x[j] - x[i]
            u /= np.linalg.norm(u)
            perp = np.cross(u, [0.0, 1.0, 0.0])
            if np.linalg.norm(perp) < 1e-8:
                perp = np.cross(u, [1.0, 0.0, 0.0])
            perp /= np.linalg.norm(perp)
            a = np.radians(ang)
            x[k] = x[i] + r * (np.cos(a) * u + np.sin(a) * perp)
            continue
        i, r, j, ang, l, dih = row
        a, d = np.radians(ang), np.radians(dih)
        bc = x[i] - x[j]
        bc /= np.linalg.norm(bc)
        nvec = np.cross(x[j] - x[l], bc)
        nvec /= np.linalg.norm(nvec)
        m = np.cross(nvec, bc)
        d2 = np.array([-r * np.cos(a), r * np.sin(a) * np.cos(d), r * np.sin(a) * np.sin(d)])
        x[k] = x[i] + d2[0] * bc + d2[1] * m + d2[2] * nvec
    return x


def _tetrahedron(r: float) -> np.ndarray:
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3.0)
    return r * v


def make_unit(name, symbols, xyz, charge, site_charges, bonds, source) -> Unit:
    """A rigid :class:`Unit` centred on its mean position.

    Parameters
    ----------
    name : str
    symbols : sequence of str
    xyz : array_like, shape (n, 3)  [Å]
        Site positions (any origin; the unit is centred on their mean).
    charge : float  [e]
        Net charge; must equal the sum of ``site_charges``.
    site_charges : sequence of float  [e]
    bonds : sequence of (int, int)
    source : str
        Where the geometry comes from.

    Returns
    -------
    Unit
    """
    xyz = np.asarray(xyz, dtype=float)
    xyz = xyz - xyz.mean(axis=0)
    xyz.setflags(write=False)
    if abs(sum(site_charges) - charge) >= 1e-9:
        raise ValueError(f"unit {name!r}: site charges sum to {sum(site_charges)!r}, not charge={charge!r} [e]")
    return Unit(
        name=name,
        symbols=tuple(symbols),
        positions=xyz,
        charge=float(charge),
        site_charges=tuple(float(q) for q in site_charges),
        bonds=tuple(bonds),
        source=source,
    )


def _so3() -> np.ndarray:
    # pyramid: S at apex, three O with O–S–O = 105°; the angle β between S–O and the axis satisfies
    # cos(OSO) = cos²β + sin²β cos(120°)
    oso = np.radians(105.0)
    cb2 = (np.cos(oso) + 0.5) / 1.5
    beta = np.arccos(np.sqrt(cb2))
    r = 1.51
    xyz = [[0.0, 0.0, 0.0]]
    for k in range(3):
        phi = 2 * np.pi * k / 3
        xyz.append([r * np.sin(beta) * np.cos(phi), r * np.sin(beta) * np.sin(phi), -r * np.cos(beta)])
    return np.array(xyz)


def _so2f() -> np.ndarray:
    # S at the origin, F on −z; two O symmetric in the xz plane... built from a Z-matrix:
    return zmatrix_to_xyz([(), (0, 1.65), (0, 1.46, 1, 101.0), (0, 1.46, 1, 101.0, 2, 115.2)])


def _nso2f() -> np.ndarray:
    return zmatrix_to_xyz(
        [(), (0, 1.52), (0, 1.45, 1, 109.47), (0, 1.45, 1, 109.47, 2, 120.0), (0, 1.60, 1, 109.47, 2, -120.0)]
    )


def _fsi() -> np.ndarray:
    # order: N, S1, S2, F1, O1, O2, F2, O3, O4
    return zmatrix_to_xyz(
        [
            (),
            (0, 1.57),
            (0, 1.57, 1, 123.0),
            (1, 1.57, 0, 103.0, 2, 90.0),
            (1, 1.43, 0, 108.0, 2, -23.8),
            (1, 1.43, 0, 108.0, 2, -156.2),
            (2, 1.57, 0, 103.0, 1, 90.0),
            (2, 1.43, 0, 108.0, 1, -23.8),
            (2, 1.43, 0, 108.0, 1, -156.2),
        ]
    )


def _tfsi() -> np.ndarray:
    # order: N, S1, S2, C1, O1, O2, C2, O3, O4, F1, F2, F3 (on C1), F4, F5, F6 (on C2)
    return zmatrix_to_xyz(
        [
            (),
            (0, 1.57),
            (0, 1.57, 1, 125.0),
            (1, 1.83, 0, 103.0, 2, 90.0),
            (1, 1.43, 0, 108.0, 2, -23.8),
            (1, 1.43, 0, 108.0, 2, -156.2),
            (2, 1.83, 0, 103.0, 1, 90.0),
            (2, 1.43, 0, 108.0, 1, -23.8),
            (2, 1.43, 0, 108.0, 1, -156.2),
            (3, 1.33, 1, 110.0, 0, 180.0),
            (3, 1.33, 1, 110.0, 0, 60.0),
            (3, 1.33, 1, 110.0, 0, -60.0),
            (6, 1.33, 2, 110.0, 0, 180.0),
            (6, 1.33, 2, 110.0, 0, 60.0),
            (6, 1.33, 2, 110.0, 0, -60.0),
        ]
    )


def _dme() -> np.ndarray:
    # order: C1 O1 C2 C3 O2 C4, then H: 3 on C1, 2 on C2, 2 on C3, 3 on C4
    co, cc, ch, coc, occ, tet = 1.416, 1.513, 1.09, 112.0, 109.0, 109.47
    return zmatrix_to_xyz(
        [
            (),
            (0, co),
            (1, co, 0, coc),
            (2, cc, 1, occ, 0, 180.0),
            (3, co, 2, occ, 1, 180.0),
            (4, co, 3, coc, 2, 180.0),
            (0, ch, 1, tet, 2, 180.0),
            (0, ch, 1, tet, 2, 60.0),
            (0, ch, 1, tet, 2, -60.0),
            (2, ch, 1, tet, 0, 60.0),
            (2, ch, 1, tet, 0, -60.0),
            (3, ch, 4, tet, 5, 60.0),
            (3, ch, 4, tet, 5, -60.0),
            (5, ch, 4, tet, 3, 180.0),
            (5, ch, 4, tet, 3, 60.0),
            (5, ch, 4, tet, 3, -60.0),
        ]
    )


def _build() -> dict:
    u = {}
    u["Li+"] = make_unit("Li+", ["Li"], [[0, 0, 0]], 1, [1], (), "monatomic ion")
    u["F-"] = make_unit("F-", ["F"], [[0, 0, 0]], -1, [-1], (), "monatomic ion")
    u["O^2-"] = make_unit("O^2-", ["O"], [[0, 0, 0]], -2, [-2], (), "monatomic ion")
    u["S^2-"] = make_unit("S^2-", ["S"], [[0, 0, 0]], -2, [-2], (), "monatomic ion")
    xyz = np.vstack([[0, 0, 0], _tetrahedron(1.49)])
    u["SO4^2-"] = make_unit(
        "SO4^2-",
        ["S", "O", "O", "O", "O"],
        xyz,
        -2,
        [2.0, -1.0, -1.0, -1.0, -1.0],
        ((0, 1), (0, 2), (0, 3), (0, 4)),
        "tetrahedral, S–O 1.49 Å (Hawthorne et al. 2000 crystal mean 1.473 Å; DFT free ion ≈ 1.49 Å)",
    )
    u["SO3^2-"] = make_unit(
        "SO3^2-",
        ["S", "O", "O", "O"],
        _so3(),
        -2,
        [1.0, -1.0, -1.0, -1.0],
        ((0, 1), (0, 2), (0, 3)),
        "pyramidal, S–O 1.51 Å, O–S–O 105° (sulfite salts, e.g. Na2SO3)",
    )
    u["SO2F-"] = make_unit(
        "SO2F-",
        ["S", "F", "O", "O"],
        _so2f(),
        -1,
        [0.6, -0.4, -0.6, -0.6],
        ((0, 1), (0, 2), (0, 3)),
        "pyramidal fluorosulfinate, S–O 1.46 Å, S–F 1.65 Å (hypothesis-grade)",
    )
    u["NSO2F^2-"] = make_unit(
        "NSO2F^2-",
        ["S", "N", "O", "O", "F"],
        _nso2f(),
        -2,
        [1.0, -1.0, -0.6, -0.6, -0.8],
        ((0, 1), (0, 2), (0, 3), (0, 4)),
        "tetrahedral S, S–N 1.52, S–O 1.45, S–F 1.60 Å (hypothesis-grade FSI fragment)",
    )
    fsi_q = [-0.66, 1.02, 1.02, -0.13, -0.53, -0.53, -0.13, -0.53, -0.53]
    u["FSI-"] = make_unit(
        "FSI-",
        ["N", "S", "S", "F", "O", "O", "F", "O", "O"],
        _fsi(),
        -1,
        fsi_q,
        ((0, 1), (0, 2), (1, 3), (1, 4), (1, 5), (2, 6), (2, 7), (2, 8)),
        "N(SO2F)2-, C2 conformer; S–N 1.57, S–O 1.43, S–F 1.57 Å, S–N–S 123° (alkali FSI crystals / DFT)",
    )
    tfsi_q = [-0.66, 1.02, 1.02, 0.35, -0.53, -0.53, 0.35, -0.53, -0.53] + [-0.16] * 6
    u["TFSI-"] = make_unit(
        "TFSI-",
        ["N", "S", "S", "C", "O", "O", "C", "O", "O", "F", "F", "F", "F", "F", "F"],
        _tfsi(),
        -1,
        tfsi_q,
        (
            (0, 1),
            (0, 2),
            (1, 3),
            (1, 4),
            (1, 5),
            (2, 6),
            (2, 7),
            (2, 8),
            (3, 9),
            (3, 10),
            (3, 11),
            (6, 12),
            (6, 13),
            (6, 14),
        ),
        "N(SO2CF3)2-, C2 conformer; S–N 1.57, S–O 1.43, S–C 1.83, C–F 1.33 Å, S–N–S 125° (LiTFSI crystal)",
    )
    u["DME"] = make_unit(
        "DME",
        ["C", "O", "C", "C", "O", "C"] + ["H"] * 10,
        _dme(),
        0,
        [0.0] * 16,
        ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 6), (0, 7), (0, 8), (2, 9), (2, 10), (3, 11), (3, 12))
        + ((5, 13), (5, 14), (5, 15)),
        "1,2-dimethoxyethane, all-trans; C–O 1.416, C–C 1.513, C–H 1.09 Å (Allen et al. 1987)",
    )
    return u


#: All known units by canonical name.
UNITS: dict = _build()

#: Accepted alternative spellings → canonical names.
ALIASES: dict = {
    "Li": "Li+",
    "Li1+": "Li+",
    "F": "F-",
    "F1-": "F-",
    "O2-": "O^2-",
    "O": "O^2-",
    "S2-": "S^2-",
    "S": "S^2-",
    "SO4": "SO4^2-",
    "SO42-": "SO4^2-",
    "SO4--": "SO4^2-",
    "SO3": "SO3^2-",
    "SO32-": "SO3^2-",
    "SO2F": "SO2F-",
    "FSO2-": "SO2F-",
    "NSO2F": "NSO2F^2-",
    "NSO2F2-": "NSO2F^2-",
    "FSI": "FSI-",
    "TFSI": "TFSI-",
    "dme": "DME",
    "C4H10O2": "DME",
}


def unit_names() -> list:
    """Canonical names of all known units."""
    return sorted(UNITS)


def get_unit(name: str) -> Unit:
    """Look up a unit by canonical name or alias.

    Parameters
    ----------
    name : str
        e.g. ``"SO4^2-"``, ``"SO4"``, ``"Li+"``, ``"FSI-"``, ``"DME"``.

    Returns
    -------
    Unit

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"unit name must be a str, got {name!r} ({type(name).__name__})")
    key = name.strip()
    if key in UNITS:
        return UNITS[key]
    if key in ALIASES:
        return UNITS[ALIASES[key]]
    raise ValueError(f"unknown unit {name!r}; valid units are {unit_names()} (aliases: {sorted(ALIASES)})")
