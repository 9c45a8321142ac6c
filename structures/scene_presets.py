"""Every interface situation of the study as a ready :class:`structures.scenes.Scene`.

* :func:`scene` — the study's ``bottom`` (Li | Type 1 | Type 2 + LiF | Cu) and ``top`` (Li | Type 1 | vitrified
  electrolyte) interfaces for each electrolyte (``"hce"``, ``"lifsi_1m"``, ``"lipf6_1m"``): the layout of
  :func:`structures.scenes.bottom` / :func:`structures.scenes.top` with the SEI and electrolyte regions tagged by
  the electrolyte's SEI preset (:mod:`structures.sei_variants`).
* :func:`between_grains` — Li grain | Type 1 SEI | Li grain (the study's Figure S3), Li₂O on the first grain.
* :func:`type2_voltage` — Cu | Type 2 SEI formed at a controlled voltage above Li/Li⁺ | vitrified electrolyte
  (Figure S4); no Li, so no Li₂O artefact.

Region kinds are those of :data:`structures.scenes.REGION_KINDS`, so :func:`simkit.synth.synthesize_scan`
composes them from a pattern library. The electrolyte and SEI variant travel in ``Region.params``
(``"electrolyte"``, ``"sei_variant"``, ``"density"`` [g/cm³], ``"sro_peak"`` [Å⁻¹] where the study gives one);
the synthesiser takes the ``sei_type1`` / ``electrolyte`` entries of that variant from its library (build it with
``preset_specs(..., electrolytes=...)``) and places the pattern at the requested ``sro_peak``
(``tests/test_scene_sro.py`` checks every request of these presets). Layer widths, tilts and roughness not given
by the study are assumptions, as in :mod:`structures.scenes`.
"""

from __future__ import annotations

import dataclasses

from .electrolyte_presets import ELECTROLYTES
from .scenes import DEFAULT_THICKNESS, Interface, Region, Scene, bottom, top
from .sei_variants import SEI_VARIANTS, type2_lif_fraction

__all__ = ["SCENE_NAMES", "between_grains", "scene", "type2_voltage"]

#: Names accepted by :func:`scene`.
SCENE_NAMES = ("bottom", "top")


def _tag(region: Region, electrolyte: str) -> Region:
    p = dict(region.params)
    v = SEI_VARIANTS[electrolyte]
    p["electrolyte"] = electrolyte
    if region.kind in ("sei_type1", "sei_type2"):
        p["sei_variant"] = electrolyte
        if electrolyte != "hce" and region.kind == "sei_type1":
            # the 1 M SEIs: preset density; the study reports no SRO peak position for them
            for k in ("density_inner", "density_outer", "sro_peak", "sro_peak_inner", "sro_peak_outer"):
                p.pop(k, None)
            p["density"] = v.density
    if region.kind == "electrolyte":
        sro = ELECTROLYTES[electrolyte].sro_peak
        if sro is None:
            p.pop("sro_peak", None)
        else:
            p["sro_peak"] = sro
    return dataclasses.replace(region, params=p)


def scene(name: str = "bottom", electrolyte: str = "hce", **kwargs) -> Scene:
    """The study's bottom or top interface with the SEI of one electrolyte.

    Parameters
    ----------
    name : {"bottom", "top"}
    electrolyte : {"hce", "lifsi_1m", "lipf6_1m"}
    **kwargs
        Passed to :func:`structures.scenes.bottom` / :func:`structures.scenes.top` (thickness [Å],
        field_shape, step [Å], widths [Å], ...).

    Returns
    -------
    Scene
        Named ``f"{name}_{electrolyte}"``; SEI/electrolyte regions carry ``electrolyte`` and ``sei_variant``.
    """
    makers = {"bottom": bottom, "top": top}
    if name not in makers:
        raise ValueError(f"name={name!r}: scenes are {', '.join(SCENE_NAMES)}")
    if electrolyte not in ELECTROLYTES:
        raise ValueError(f"electrolyte={electrolyte!r}: valid electrolytes are {sorted(ELECTROLYTES)}")
    base = makers[name](**kwargs)
    layers = tuple(
        _tag(r, electrolyte) if r.kind in ("sei_type1", "sei_type2", "electrolyte") else r for r in base.layers
    )
    return dataclasses.replace(base, name=f"{name}_{electrolyte}", layers=layers)


def between_grains(
    *,
    thickness: float = DEFAULT_THICKNESS,
    field_shape: tuple[int, int] = (40, 60),
    step: float = 40.0,
    sei_width: float = 200.0,
    li_side: float = 1000.0,
    tilt: float = 80.0,
    roughness: float = 20.0,
    oxide_thickness: float = 15.0,
    density: float = 2.1,
    seed: int = 3,
) -> Scene:
    """Type 1 SEI between two Li grains (the study's Figure S3; HCE).

    Parameters
    ----------
    thickness : float  [Å]
        Lamella thickness (assumption, 60 nm).
    field_shape : (int, int)
        (n_y, n_x) scan positions.
    step : float  [Å]
    sei_width : float  [Å]
        Type 1 width at mid-thickness (assumption: 20 nm).
    li_side : float  [Å]
        Position of the first Li | SEI interface along x.
    tilt, roughness : float  [Å]
        Interface tilt through the lamella and rms roughness (assumptions).
    oxide_thickness : float  [Å]
        Li₂O per lamella surface on the first grain.
    density : float  [g/cm³]
        Type 1 density (hypothesis, :func:`structures.sei_variants.type1_between_grains`).
    seed : int

    Returns
    -------
    Scene
    """
    layers = (
        Region(name="li_a", kind="li_metal", params={"grain_edges": (), "grain_orientations": ((0, 0, 1),)}),
        Region(
            name="type1",
            kind="sei_type1",
            params={"density": float(density), "sro_peak": 0.33, "electrolyte": "hce", "sei_variant": "hce"},
        ),
        Region(name="li_b", kind="li_metal", params={"grain_edges": (), "grain_orientations": ((1, 1, 1),)}),
    )
    interfaces = tuple(
        Interface(position=p, tilt=tilt, roughness=roughness, seed=int(seed) + k)
        for k, p in enumerate((li_side, li_side + sei_width))
    )
    oxide = Region(name="li2o", kind="li2o", params={"host": "li_a", "thickness": float(oxide_thickness)})
    return Scene(
        name="between_grains",
        layers=layers,
        interfaces=interfaces,
        oxide=oxide,
        thickness=thickness,
        field_shape=field_shape,
        step=step,
    )


def type2_voltage(
    voltage: float = 0.5,
    *,
    thickness: float = DEFAULT_THICKNESS,
    field_shape: tuple[int, int] = (40, 60),
    step: float = 40.0,
    sei_width: float = 350.0,
    cu_side: float = 800.0,
    tilt: float = 80.0,
    roughness: float = 30.0,
    seed: int = 4,
) -> Scene:
    """Cu | Type 2 SEI formed at a controlled voltage above Li/Li⁺ | vitrified HCE (the study's Figure S4).

    Parameters
    ----------
    voltage : float  [V vs Li/Li⁺]
        Formation voltage; sets the LiF volume fraction (:func:`structures.sei_variants.type2_lif_fraction`).
    thickness : float  [Å]
    field_shape : (int, int)
    step : float  [Å]
    sei_width : float  [Å]
        Type 2 width (assumption: 35 nm, as at the bottom interface).
    cu_side : float  [Å]
        Position of the Cu | SEI interface along x.
    tilt, roughness : float  [Å]
    seed : int

    Returns
    -------
    Scene
    """
    f = type2_lif_fraction(voltage)
    layers = (
        Region(
            name="cu",
            kind="cu",
            params={"grain_edges": (0.5 * (field_shape[0] - 1) * step,), "grain_orientations": ((0, 0, 1), (0, 1, 1))},
        ),
        Region(
            name="type2",
            kind="sei_type2",
            params={
                "sro_peak": 0.295,
                "voltage": float(voltage),
                "lif_volume_fraction": f,
                "lif_f_vacancy": 0.25,
                "lif_diameter": 30.0,
                "lif_seed": int(seed),
                "electrolyte": "hce",
                "sei_variant": "hce",
            },
        ),
        Region(name="electrolyte", kind="electrolyte", params={"sro_peak": 0.285, "electrolyte": "hce"}),
    )
    interfaces = tuple(
        Interface(position=p, tilt=tilt, roughness=roughness, seed=int(seed) + k)
        for k, p in enumerate((cu_side, cu_side + sei_width))
    )
    return Scene(
        name=f"type2_voltage_{float(voltage):g}V",
        layers=layers,
        interfaces=interfaces,
        oxide=None,
        thickness=thickness,
        field_shape=field_shape,
        step=step,
    )
