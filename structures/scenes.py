"""Scenes: nanocrystals embedded in matrices, columns along the beam, and whole-scan region maps.

Three tools:

* `embed` puts nanocrystals into an amorphous matrix and removes the matrix atoms that overlap them
  (scipy cKDTree with a periodic box; no O(N²) loops).
* `column` stacks structures along the beam (z) to a given lamella thickness [nm]; `scene_column` does it
  for one scan position of a Scene (pieces from `Scene.segments`, in beam order).
* `Scene` describes a whole scan field without atoms: layers (`Region`) separated by rough interfaces that
  are tilted through the lamella thickness (`Interface`), so that a probe near an interface sees a mixture
  of regions along the beam. `Scene.fractions(y, x)` returns the volume fraction of each region in the
  column at scan position (y, x) [Å], computed analytically; `Scene.parameters(y, x)` returns per-position
  parameters (density gradients, grain indices, nanocrystal seeds). `bottom()` and `top()` are the two
  interfaces of the reference study (Koh, Detsi, Stach: cryo-SEND of SEIs on Li metal).

Geometry of a Scene
-------------------
Scan position (y, x) [Å], pixel (i, j) at (origin_y + i·step, origin_x + j·step). Layers are stacked along
the *normal* axis (x by default, the fast scan axis, 90 positions); the other axis runs *along* the
interfaces (coordinate u). The beam travels along z through the lamella, 0 ≤ z ≤ thickness. Interface k
between layer k and k + 1 sits at

    s_k(u, z) = position_k + roughness_k(u) + tilt_k · (z / thickness − 1/2)      [Å]

where roughness_k is a smooth, seeded random profile (a sum of random Fourier modes with a Gaussian
spectrum: rms `roughness` [Å], correlation length `correlation_length` [Å]) and `tilt` [Å] is how far the
interface moves between the entrance and exit surface of the lamella. The fraction of the column beyond
interface k is the fraction of z for which s ≥ s_k(u, z), which is an analytic clip of a linear function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from .checks import check_positive
from .crystals import mass_density, resolve_rng

__all__ = [
    "DEFAULT_THICKNESS",
    "REGION_KINDS",
    "Interface",
    "Region",
    "Scene",
    "bottom",
    "column",
    "embed",
    "scene_column",
    "smooth_field",
    "top",
]

#: Region kinds a Scene may contain.
REGION_KINDS: tuple[str, ...] = ("li_metal", "cu", "li2o", "sei_type1", "sei_type2", "electrolyte", "vacuum")

#: Default lamella thickness along the beam [Å] (60 nm). An assumption: the study does not state the
#: lamella thickness; 50–100 nm is typical for cryo-FIB lift-outs thinned to electron transparency.
DEFAULT_THICKNESS = 600.0


# ================================================================================================================
# embed and column
# ================================================================================================================
def _orthorhombic_lengths(atoms: Atoms, name: str) -> np.ndarray:
    cell = atoms.cell.array
    if not np.allclose(cell, np.diag(np.diag(cell)), atol=1e-9) or np.any(np.diag(cell) <= 0):
        raise ValueError(f"{name} must have an orthorhombic cell with positive edges, got {cell.tolist()} Å")
    return np.diag(cell).copy()


def _wrap(pos: np.ndarray, box: np.ndarray) -> np.ndarray:
    out = np.mod(pos, box)
    out[out >= box] = 0.0
    return out


def embed(
    matrix: Atoms,
    crystals: Atoms | Sequence[Atoms],
    positions: Sequence[Sequence[float]] | None = None,
    *,
    min_distance: float = 2.0,
    whole_units: str | None = "unit_id",
    max_attempts: int = 10_000,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Put nanocrystals into a periodic matrix and remove the matrix atoms that overlap them.

    Parameters
    ----------
    matrix : ase.Atoms
        Periodic matrix (e.g. an amorphous SEI) with an orthorhombic cell.
    crystals : ase.Atoms or sequence of ase.Atoms
        Nanocrystals (e.g. from `structures.crystals.nanocrystal`); each is placed by its centroid
        (mean atom position), keeping its orientation.
    positions : sequence of (x, y, z), optional  [Å]
        Where to put each crystal's centroid. By default random positions (from `rng`) such that no two
        crystals come closer than `min_distance` (bounding spheres, periodic), at most `max_attempts` tries.
    min_distance : float  [Å]
        Matrix atoms closer than this (strictly) to any crystal atom are removed, periodic images included.
    whole_units : str or None
        Name of a per-atom integer array of `matrix` that labels rigid units (molecules, polyanions such as
        SO₄²⁻; ``"unit_id"`` as written by `structures.amorphous`). If the matrix has it, every atom of a
        unit that has one overlapping atom is removed too, so no fragment of a unit is left behind. None
        (or a matrix without that array) removes single atoms only.
    max_attempts : int
        Bound on random placement tries per crystal.
    rng : numpy.random.Generator | int | None
        Random source for the positions.

    Returns
    -------
    ase.Atoms
        Matrix atoms kept (in their original order) followed by the crystal atoms (wrapped into the cell),
        same cell, pbc True. ``arrays["crystal"]`` is −1 for matrix atoms and the crystal index otherwise;
        other per-atom arrays of the matrix (e.g. ``unit_id``) are kept for the matrix atoms and set to −1
        for crystal atoms. ``info`` holds n_matrix, n_removed, removed (indices into `matrix`), crystal_positions [Å],
        min_distance [Å], seed, composition and density [g/cm³].
    """
    if not isinstance(matrix, Atoms):
        raise TypeError(f"matrix={type(matrix).__name__} is not an ase.Atoms")
    box = _orthorhombic_lengths(matrix, "matrix")
    crystal_list = [crystals] if isinstance(crystals, Atoms) else list(crystals)
    if not crystal_list or not all(isinstance(c, Atoms) and len(c) > 0 for c in crystal_list):
        raise TypeError("crystals must be a non-empty ase.Atoms or a sequence of non-empty ase.Atoms")
    if not (math.isfinite(float(min_distance)) and float(min_distance) >= 0):
        raise ValueError(f"min_distance={min_distance!r} Å must be >= 0")
    min_distance = float(min_distance)
    gen, seed = resolve_rng(rng)

    local = []
    radii = []
    for k, c in enumerate(crystal_list):
        p = c.positions - c.positions.mean(axis=0)
        extent = p.max(axis=0) - p.min(axis=0)
        if np.any(extent + min_distance > box):
            raise ValueError(
                f"crystals[{k}] (extent {np.round(extent, 2).tolist()} Å plus min_distance {min_distance} Å) is "
                f"larger than the matrix box {np.round(box, 2).tolist()} Å; use a larger matrix or a smaller crystal"
            )
        local.append(p)
        radii.append(float(np.sqrt(np.max(np.einsum("ij,ij->i", p, p)))))

    if positions is None:
        centres: list[np.ndarray] = []
        for k, r in enumerate(radii):
            for _ in range(int(max_attempts)):
                c = gen.uniform(0, box)
                ok = True
                for c2, r2 in zip(centres, radii):
                    d = c - c2
                    d -= box * np.round(d / box)
                    if np.linalg.norm(d) < r + r2 + min_distance:
                        ok = False
                        break
                if ok:
                    centres.append(c)
                    break
            else:
                raise ValueError(
                    f"could not place crystals[{k}] (radius {r:.1f} Å) without overlapping the others after "
                    f"max_attempts={max_attempts} tries; use fewer/smaller crystals or a larger matrix"
                )
    else:
        centres = [np.asarray(c, dtype=float) for c in positions]
        if len(centres) != len(crystal_list) or any(c.shape != (3,) for c in centres):
            raise ValueError(
                f"positions must give one (x, y, z) [Å] per crystal: {len(crystal_list)} expected, got {positions!r}"
            )

    placed = [_wrap(p + c, box) for p, c in zip(local, centres)]
    all_cryst = np.concatenate(placed)
    owner = np.concatenate([np.full(len(p), k) for k, p in enumerate(placed)])
    tree = cKDTree(all_cryst, boxsize=box)
    if len(placed) > 1 and min_distance > 0:
        pairs = tree.query_pairs(min_distance, output_type="ndarray")
        clash = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]] if len(pairs) else pairs
        if len(clash):
            a, b = owner[clash[0, 0]], owner[clash[0, 1]]
            raise ValueError(
                f"crystals[{a}] and crystals[{b}] come closer than min_distance={min_distance} Å at the given "
                "positions; move them apart"
            )
    mpos = _wrap(matrix.positions, box)
    if min_distance > 0:
        d, _ = tree.query(mpos, k=1, distance_upper_bound=min_distance)
        remove = d < min_distance
        if whole_units is not None and whole_units in matrix.arrays and np.any(remove):
            unit = np.asarray(matrix.arrays[whole_units])
            remove = np.isin(unit, np.unique(unit[remove]))
    else:
        remove = np.zeros(len(matrix), dtype=bool)

    kept_symbols = [s for s, r in zip(matrix.get_chemical_symbols(), remove) if not r]
    symbols = kept_symbols + [s for c in crystal_list for s in c.get_chemical_symbols()]
    out = Atoms(
        symbols=symbols,
        positions=np.concatenate([mpos[~remove], all_cryst]),
        cell=np.diag(box),
        pbc=True,
    )
    out.set_array("crystal", np.concatenate([np.full(len(kept_symbols), -1), owner]).astype(int))
    for key, values in matrix.arrays.items():
        if key in ("numbers", "positions", "crystal") or np.asarray(values).ndim != 1:
            continue
        values = np.asarray(values)
        if np.issubdtype(values.dtype, np.integer):
            out.set_array(key, np.concatenate([values[~remove], np.full(len(all_cryst), -1, dtype=values.dtype)]))
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    out.info.update(
        {
            "builder": "structures.scenes.embed",
            "n_matrix": len(matrix),
            "n_removed": int(np.count_nonzero(remove)),
            "removed": np.flatnonzero(remove).tolist(),
            "n_crystal_atoms": len(all_cryst),
            "crystal_positions": [np.asarray(c, dtype=float).tolist() for c in centres],
            "min_distance": min_distance,
            "whole_units": whole_units if whole_units is not None and whole_units in matrix.arrays else None,
            "seed": seed,
            "composition": dict(sorted(counts.items())),
            "density": mass_density(symbols, float(np.prod(box))),
            "matrix_info": {k: v for k, v in matrix.info.items() if isinstance(v, (str, int, float, bool))},
        }
    )
    return out


def column(
    layers: Sequence[tuple[Atoms | None, float]],
    thickness_nm: float = DEFAULT_THICKNESS / 10.0,
    *,
    cell_xy: tuple[float, float] | None = None,
) -> Atoms:
    """Stack structures along the beam (z) into a column through a lamella.

    Each layer's periodic structure is tiled laterally to cover the column cross-section and cropped to
    it, and tiled along z and cropped to its share of the thickness. Cropping a crystal to a length that
    is not a multiple of its period breaks its periodicity at the cut; that is harmless for a probe far
    from the lateral edges (choose `cell_xy` a few probe widths wide).

    Parameters
    ----------
    layers : sequence of (ase.Atoms or None, float)
        Structures (orthorhombic periodic cells) in beam order, entrance surface first, with their volume
        fractions along the beam (≥ 0, summing to 1 within 1e-6, e.g. a row of `Scene.fractions`).
        None is an empty (vacuum) layer. Layers with fraction 0 are skipped.
    thickness_nm : float  [nm]
        Lamella thickness (converted once to Å). Default 60 nm (an assumption, see `DEFAULT_THICKNESS`).
    cell_xy : (float, float), optional  [Å]
        Lateral size of the column; by default that of the first layer with a non-zero fraction.

    Returns
    -------
    ase.Atoms
        Cell (Lx, Ly, thickness) [Å], pbc (True, True, False); ``arrays["layer"]`` holds each atom's layer
        index; ``info`` holds thickness [Å], the layers (index, fraction, z range [Å], n_atoms, phase
        when known), composition and density [g/cm³].
    """
    t_nm = check_positive("thickness_nm", thickness_nm, "nm")
    thickness = 10.0 * t_nm
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise TypeError("layers must be a non-empty sequence of (ase.Atoms, fraction) pairs")
    pairs = []
    for k, item in enumerate(layers):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and (item[0] is None or isinstance(item[0], Atoms))):
            raise TypeError(f"layers[{k}]={item!r} is not an (ase.Atoms or None, fraction) pair")
        f = float(item[1])
        if not (math.isfinite(f) and f >= 0):
            raise ValueError(f"layers[{k}] fraction={item[1]!r} must be >= 0")
        pairs.append((item[0], f))
    total = sum(f for _, f in pairs)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"layer fractions sum to {total!r}; they must sum to 1 (volume fractions along the beam)")
    active = [(k, a, f) for k, (a, f) in enumerate(pairs) if f > 0]
    if cell_xy is None:
        first = [(k, a) for k, a, _ in active if a is not None]
        if not first:
            raise ValueError("cell_xy is required when every layer is vacuum (None)")
        lxy = _orthorhombic_lengths(first[0][1], f"layers[{first[0][0]}]")[:2]
    else:
        lxy = np.asarray(cell_xy, dtype=float)
        if lxy.shape != (2,) or np.any(~np.isfinite(lxy)) or np.any(lxy <= 0):
            raise ValueError(f"cell_xy={cell_xy!r} must be two positive lengths [Å]")

    symbols: list[str] = []
    chunks: list[np.ndarray] = []
    tags: list[np.ndarray] = []
    info_layers = []
    z0 = 0.0
    for n_active, (k, atoms, f) in enumerate(active):
        t = f * thickness if n_active < len(active) - 1 else thickness - z0
        if atoms is None:
            info_layers.append({"index": k, "fraction": f, "z_range": [z0, z0 + t], "n_atoms": 0, "phase": "vacuum"})
            z0 += t
            continue
        lengths = _orthorhombic_lengths(atoms, f"layers[{k}]")
        reps = np.ceil(np.array([lxy[0], lxy[1], t]) / lengths).astype(int)
        base = _wrap(atoms.positions, lengths)
        shifts = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), axis=-1).reshape(-1, 3) * lengths
        pos = (base[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        sym = np.tile(np.asarray(atoms.get_chemical_symbols()), len(shifts))
        keep = (pos[:, 0] < lxy[0]) & (pos[:, 1] < lxy[1]) & (pos[:, 2] < t)
        pos, sym = pos[keep], sym[keep]
        pos[:, 2] += z0
        chunks.append(pos)
        symbols.extend(sym.tolist())
        tags.append(np.full(len(pos), k))
        info_layers.append(
            {
                "index": k,
                "fraction": f,
                "z_range": [z0, z0 + t],
                "n_atoms": len(pos),
                "phase": atoms.info.get("phase", atoms.info.get("builder", "")),
            }
        )
        z0 += t
    out = Atoms(
        symbols=symbols,
        positions=np.concatenate(chunks) if chunks else np.zeros((0, 3)),
        cell=np.diag([lxy[0], lxy[1], thickness]),
        pbc=(True, True, False),
    )
    out.set_array("layer", np.concatenate(tags).astype(int) if tags else np.zeros(0, dtype=int))
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    out.info.update(
        {
            "builder": "structures.scenes.column",
            "thickness": thickness,
            "layers": info_layers,
            "composition": dict(sorted(counts.items())),
            "density": mass_density(symbols, float(lxy[0] * lxy[1] * thickness)) if symbols else 0.0,
        }
    )
    return out


def scene_column(
    scene: Scene,
    y: float,
    x: float,
    structures: Mapping[str, Atoms | None],
    *,
    cell_xy: tuple[float, float] | None = None,
) -> Atoms:
    """Atoms of the lamella column at one scan position of a Scene (for a multislice simulation there).

    Parameters
    ----------
    scene : Scene
    y, x : float  [Å]
        Scan position.
    structures : mapping str → ase.Atoms or None
        A periodic structure per region name (or per region kind, used when the name is absent), e.g.
        {"li": bulk Li supercell, "type1": amorphous Type 1, ..., "li2o": bulk Li₂O}; None means vacuum.
        Regions of kind "vacuum" need no entry.
    cell_xy : (float, float), optional  [Å]
        Lateral size of the column (default: that of the first structure used).

    Returns
    -------
    ase.Atoms
        `column` of the pieces of `Scene.segments` in beam order; ``info["segments"]`` lists them.
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"scene={type(scene).__name__} is not a Scene")
    kinds = {r.name: r.kind for r in scene.regions}
    layers = []
    segs = scene.segments(y, x)
    for name, z0, z1 in segs:
        if name in structures:
            atoms = structures[name]
        elif kinds[name] in structures:
            atoms = structures[kinds[name]]
        elif kinds[name] == "vacuum":
            atoms = None
        else:
            needed = sorted({n for n, _, _ in segs if kinds[n] != "vacuum"})
            raise ValueError(
                f"structures has no entry for region {name!r} (kind {kinds[name]!r}); this column needs {needed}"
            )
        layers.append((atoms, (z1 - z0) / scene.thickness))
    total = sum(f for _, f in layers)
    layers = [(a, f / total) for a, f in layers]  # remove round-off
    out = column(layers, scene.thickness / 10.0, cell_xy=cell_xy)
    out.info["segments"] = [[n, z0, z1] for n, z0, z1 in segs]
    out.info["scene"] = scene.name
    out.info["position"] = [float(y), float(x)]
    return out


# ================================================================================================================
# Scene
# ================================================================================================================
def _freeze(value: Any) -> Any:
    """Lists → tuples (recursively) so that parameters compare equal after a JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return _freeze(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def smooth_field(coords: np.ndarray, *, length: float, seed: int, n_modes: int = 24) -> np.ndarray:
    """A smooth, stationary random field with unit rms (in expectation), evaluated anywhere.

    Parameters
    ----------
    coords : array, shape (..., d)  [Å]
        Points in d dimensions.
    length : float  [Å]
        Correlation length ℓ: correlation exp(−|Δr|² / (2 ℓ²)).
    seed : int
        Seed; the same seed gives the same field at every call.
    n_modes : int
        Number of random Fourier modes.

    Returns
    -------
    numpy.ndarray, shape coords.shape[:-1]
        √(2/n)·Σ cos(k_i·r + φ_i), k_i ~ N(0, 1/ℓ²) per component, φ_i ~ U(0, 2π).
    """
    coords = np.asarray(coords, dtype=float)
    gen = np.random.default_rng(int(seed))
    k = gen.normal(0.0, 1.0 / float(length), (int(n_modes), coords.shape[-1]))
    phase = gen.uniform(0.0, 2 * np.pi, int(n_modes))
    return math.sqrt(2.0 / n_modes) * np.cos(coords @ k.T + phase).sum(axis=-1)


@dataclass(frozen=True, kw_only=True)
class Region:
    """One layer (or the surface oxide) of a Scene.

    Parameters
    ----------
    name : str
        Unique name, used as the key prefix in `Scene.parameters`.
    kind : str
        One of `REGION_KINDS`: "li_metal", "cu", "li2o", "sei_type1", "sei_type2", "electrolyte", "vacuum".
    params : dict
        Physical parameters, units in the key's documentation. Recognised by `Scene.parameters`:
        ``density`` [g/cm³] (constant) or ``density_inner``/``density_outer`` [g/cm³] (linear gradient
        across the layer, inner = side of the previous layer); ``sro_peak`` or ``sro_peak_inner``/
        ``sro_peak_outer`` [Å⁻¹] (first SRO peak: for Type 1, the Type 2 matrix and the electrolyte the
        synthesiser places the amorphous pattern there, see ``simkit.synth``); ``grain_edges`` [Å] (positions
        along the interface where a new grain starts) with ``grain_orientations`` (zone axes, one per
        grain); ``lif_seed`` (int, base of per-pixel LiF-nanocrystal seeds); ``variation_rms``
        (relative, dimensionless), ``variation_length`` [Å] and ``variation_seed`` (int): a smooth random
        local variation ε(y, x) that scales ``sro_peak`` by (1 + ε) and ``density`` by (1 + 3ε). Other keys (e.g.
        ``lif_volume_fraction``, ``lif_f_vacancy``, ``lif_diameter`` [Å], ``thickness`` [Å] of an oxide)
        are carried along for the consumer.
    """

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        if self.kind not in REGION_KINDS:
            raise ValueError(f"kind={self.kind!r} is not a region kind; valid kinds are {', '.join(REGION_KINDS)}")
        if not isinstance(self.params, Mapping):
            raise TypeError(f"params={self.params!r} must be a mapping of parameter names to values")
        object.__setattr__(self, "params", _freeze(self.params))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {"name": self.name, "kind": self.kind, "params": _thaw(self.params)}

    def __hash__(self) -> int:  # params is a dict: hash its canonical JSON so Regions can key caches
        return hash(json.dumps(self.to_dict(), sort_keys=True))


@dataclass(frozen=True, kw_only=True)
class Interface:
    """A rough interface tilted through the lamella thickness.

    Parameters
    ----------
    position : float  [Å]
        Mean position along the layer normal, at mid-thickness (z = thickness/2).
    tilt : float  [Å]
        Displacement of the interface between the entrance (z = 0) and the exit (z = thickness) surface;
        tilt / thickness = tan(inclination of the interface to the beam).
    roughness : float  [Å]
        Rms of the smooth random profile along the interface (0 = straight).
    correlation_length : float  [Å]
        Correlation length of the roughness (Gaussian spectrum).
    seed : int
        Seed of the roughness profile.
    n_modes : int
        Number of random Fourier modes in the profile.
    """

    position: float
    tilt: float = 0.0
    roughness: float = 0.0
    correlation_length: float = 400.0
    seed: int = 0
    n_modes: int = 24

    def __post_init__(self) -> None:
        for name in ("position", "tilt", "roughness", "correlation_length"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
                raise ValueError(f"{name}={v!r} Å must be a finite number")
            object.__setattr__(self, name, float(v))
        if self.roughness < 0:
            raise ValueError(f"roughness={self.roughness!r} Å must be >= 0")
        if self.correlation_length <= 0:
            raise ValueError(f"correlation_length={self.correlation_length!r} Å must be > 0")
        if int(self.n_modes) < 1:
            raise ValueError(f"n_modes={self.n_modes!r} must be >= 1")
        object.__setattr__(self, "n_modes", int(self.n_modes))
        object.__setattr__(self, "seed", int(self.seed))

    def profile(self, u: np.ndarray) -> np.ndarray:
        """Roughness profile along the interface.

        Parameters
        ----------
        u : array  [Å]
            Coordinate along the interface.

        Returns
        -------
        numpy.ndarray  [Å]
            r(u) = roughness·√(2/n)·Σ cos(κ_i u + φ_i), κ_i ~ N(0, 1/correlation_length), φ_i ~ U(0, 2π):
            a stationary random profile with rms `roughness` (in expectation) and correlation
            exp(−Δu² / (2 ℓ²)).
        """
        u = np.asarray(u, dtype=float)
        if self.roughness == 0:
            return np.zeros_like(u)
        return self.roughness * smooth_field(
            u[..., None], length=self.correlation_length, seed=self.seed, n_modes=self.n_modes
        )

    def position_at(self, u: np.ndarray, z: np.ndarray, thickness: float) -> np.ndarray:
        """Interface position along the layer normal.

        Parameters
        ----------
        u : array  [Å]
            Coordinate along the interface.
        z : array  [Å]
            Depth along the beam, 0 (entrance) … thickness (exit).
        thickness : float  [Å]
            Lamella thickness.

        Returns
        -------
        numpy.ndarray  [Å]
            s(u, z) = position + r(u) + tilt·(z/thickness − 1/2).
        """
        return self.position + self.profile(u) + self.tilt * (np.asarray(z, dtype=float) / thickness - 0.5)

    def beyond(self, s: np.ndarray, u: np.ndarray, thickness: float) -> np.ndarray:
        """Fraction of the column through the lamella that lies beyond (on the +normal side of) this interface.

        Parameters
        ----------
        s : array  [Å]
            Normal coordinate of the column.
        u : array  [Å]
            Coordinate along the interface.
        thickness : float  [Å]
            Lamella thickness.

        Returns
        -------
        numpy.ndarray
            Fraction in [0, 1]. Exact for the linear dependence on z: the column crosses the interface at
            depth z* = thickness·((s − position − r(u)) / tilt + 1/2).
        """
        offset = np.asarray(s, dtype=float) - self.position - self.profile(u)
        if self.tilt == 0:
            return (offset >= 0).astype(float)
        with np.errstate(over="ignore"):  # a vanishing tilt sends z* to ±inf, which the clip handles
            zstar = offset / self.tilt + 0.5
        return np.clip(zstar, 0.0, 1.0) if self.tilt > 0 else np.clip(1.0 - zstar, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {
            "position": self.position,
            "tilt": self.tilt,
            "roughness": self.roughness,
            "correlation_length": self.correlation_length,
            "seed": self.seed,
            "n_modes": self.n_modes,
        }


@dataclass(frozen=True, kw_only=True)
class Scene:
    """Region map of a whole scan field, in physical coordinates, without atoms.

    Parameters
    ----------
    name : str
    layers : tuple of Region
        Layers in order along the normal axis (increasing coordinate).
    interfaces : tuple of Interface
        len(layers) − 1 interfaces; interface k separates layers k and k + 1. Interfaces should not
        cross; if they do, the later one is clipped to the earlier (fractions stay ≥ 0 and sum to 1).
    oxide : Region or None
        Surface layer (kind "li2o", the lift-out oxidation artefact) on both lamella surfaces inside the
        layer named by ``oxide.params["host"]``; ``oxide.params["thickness"]`` [Å] per surface.
    thickness : float  [Å]
        Lamella thickness along the beam. Default 600 Å (60 nm): an assumption, the study gives none.
    field_shape : (int, int)
        Scan positions (n_y, n_x); default (60, 90) as in the study (90 × 60 positions).
    step : float  [Å]
        Scan step; default 40 Å (4 nm) as in the study.
    origin : (float, float)  [Å]
        Position (y, x) of pixel (0, 0).
    normal_axis : {"x", "y"}
        Axis along which the layers are stacked.
    """

    name: str
    layers: tuple[Region, ...]
    interfaces: tuple[Interface, ...]
    oxide: Region | None = None
    thickness: float = DEFAULT_THICKNESS
    field_shape: tuple[int, int] = (60, 90)
    step: float = 40.0
    origin: tuple[float, float] = (0.0, 0.0)
    normal_axis: str = "x"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        interfaces = tuple(self.interfaces)
        if not layers or not all(isinstance(r, Region) for r in layers):
            raise TypeError("layers must be a non-empty sequence of Region")
        if not all(isinstance(i, Interface) for i in interfaces):
            raise TypeError("interfaces must be a sequence of Interface")
        if len(interfaces) != len(layers) - 1:
            raise ValueError(f"{len(layers)} layers need {len(layers) - 1} interfaces, got {len(interfaces)}")
        positions = [i.position for i in interfaces]
        if any(b < a for a, b in zip(positions, positions[1:])):
            raise ValueError(
                f"interface positions {positions} Å must be non-decreasing along the normal (layers in order)"
            )
        names = [r.name for r in layers] + ([self.oxide.name] if self.oxide is not None else [])
        if len(set(names)) != len(names):
            raise ValueError(f"region names must be unique, got {names}")
        if self.oxide is not None:
            if not isinstance(self.oxide, Region):
                raise TypeError(f"oxide={self.oxide!r} must be a Region or None")
            host = self.oxide.params.get("host")
            if host not in [r.name for r in layers]:
                raise ValueError(
                    f"oxide.params['host']={host!r} must name one of the layers {[r.name for r in layers]}"
                )
            t_ox = self.oxide.params.get("thickness")
            if not (isinstance(t_ox, (int, float)) and 0 <= t_ox <= 0.5 * float(self.thickness)):
                raise ValueError(
                    f"oxide.params['thickness']={t_ox!r} Å must be in [0, thickness/2 = {0.5 * self.thickness}]"
                )
        if not (math.isfinite(float(self.thickness)) and float(self.thickness) > 0):
            raise ValueError(f"thickness={self.thickness!r} Å must be > 0")
        if not (math.isfinite(float(self.step)) and float(self.step) > 0):
            raise ValueError(f"step={self.step!r} Å must be > 0")
        shape = tuple(int(n) for n in self.field_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"field_shape={self.field_shape!r} must be two positive integers (n_y, n_x)")
        if self.normal_axis not in ("x", "y"):
            raise ValueError(f"normal_axis={self.normal_axis!r} must be 'x' or 'y'")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "interfaces", interfaces)
        object.__setattr__(self, "field_shape", shape)
        object.__setattr__(self, "thickness", float(self.thickness))
        object.__setattr__(self, "step", float(self.step))
        object.__setattr__(self, "origin", (float(self.origin[0]), float(self.origin[1])))

    # ------------------------------------------------------------------------------------------------------------
    @property
    def regions(self) -> tuple[Region, ...]:
        """All regions in column order of `fractions`: the layers, then the oxide (if any)."""
        return self.layers + ((self.oxide,) if self.oxide is not None else ())

    @property
    def region_names(self) -> tuple[str, ...]:
        """Names of `regions` (labels of the last axis of `fractions`)."""
        return tuple(r.name for r in self.regions)

    @property
    def extent(self) -> tuple[float, float]:
        """Size (y, x) [Å] of the scanned field (n − 1)·step."""
        return ((self.field_shape[0] - 1) * self.step, (self.field_shape[1] - 1) * self.step)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Scan positions of the field.

        Returns
        -------
        (Y, X) : numpy.ndarray, each of shape `field_shape`  [Å]
        """
        y = self.origin[0] + self.step * np.arange(self.field_shape[0])
        x = self.origin[1] + self.step * np.arange(self.field_shape[1])
        return np.meshgrid(y, x, indexing="ij")

    def _coords(self, y: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
        y, x = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(x, dtype=float))
        return (x, y) if self.normal_axis == "x" else (y, x)  # (s = normal, u = along)

    def fractions(self, y: Any, x: Any) -> np.ndarray:
        """Volume fraction of every region in the column through the lamella at scan position (y, x).

        Parameters
        ----------
        y, x : array_like  [Å]
            Scan positions (broadcast together).

        Returns
        -------
        numpy.ndarray, shape broadcast(y, x).shape + (len(regions),)
            Fractions ≥ 0 summing to 1 along the last axis, ordered as `region_names`.
        """
        s, u = self._coords(y, x)
        beyond = [itf.beyond(s, u, self.thickness) for itf in self.interfaces]
        for k in range(1, len(beyond)):  # interfaces must not cross: later ones clip to earlier ones
            beyond[k] = np.minimum(beyond[k], beyond[k - 1])
        cum = [np.ones_like(s)] + beyond + [np.zeros_like(s)]
        out = [cum[k] - cum[k + 1] for k in range(len(self.layers))]
        if self.oxide is not None:
            host = [r.name for r in self.layers].index(self.oxide.params["host"])
            share = min(1.0, 2.0 * float(self.oxide.params["thickness"]) / self.thickness)
            ox = out[host] * share
            out[host] = out[host] - ox
            out.append(ox)
        return np.stack(out, axis=-1)

    def layer_bounds(self, y: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Position of every interface at mid-thickness along the scan coordinate that runs along the interfaces.

        Parameters
        ----------
        y, x : array_like  [Å]

        Returns
        -------
        (s, bounds) : numpy.ndarray, numpy.ndarray  [Å]
            s is the normal coordinate of (y, x); bounds has shape s.shape + (len(interfaces),), the
            interface positions at z = thickness / 2 (roughness included) for the same along-interface u.
        """
        s, u = self._coords(y, x)
        b = [itf.position + itf.profile(u) for itf in self.interfaces]
        return s, (np.stack(b, axis=-1) if b else np.zeros(s.shape + (0,)))

    def segments(self, y: float, x: float) -> list[tuple[str, float, float]]:
        """The column at one scan position as regions in beam order.

        Parameters
        ----------
        y, x : float  [Å]
            One scan position.

        Returns
        -------
        list of (region name, z_start, z_end)  [Å]
            Contiguous pieces from the entrance (z = 0) to the exit surface (z = thickness). A layer is
            present at depth z where the column lies beyond all earlier interfaces and before its own (the
            same rule as `fractions`, so piece lengths / thickness equal `fractions` whenever interfaces do
            not cross). The surface oxide takes the share 2·t_ox/thickness of every host piece, placed at
            the ends of the piece that touch a lamella surface (split between both ends otherwise).
        """
        s_, u_ = self._coords(y, x)
        if s_.ndim != 0:
            raise ValueError(f"segments takes one position (scalars y, x), got arrays of shape {s_.shape}")
        s, u = float(s_), float(u_)
        t_total = self.thickness
        cuts = {0.0, t_total}
        for itf in self.interfaces:
            if itf.tilt != 0:
                z = t_total * ((s - itf.position - float(itf.profile(u))) / itf.tilt + 0.5)
                if 0.0 < z < t_total:
                    cuts.add(z)
        cuts_sorted = sorted(cuts)
        pieces: list[list] = []
        for z0, z1 in zip(cuts_sorted[:-1], cuts_sorted[1:]):
            if z1 <= z0:
                continue
            zm = 0.5 * (z0 + z1)
            k = len(self.layers) - 1
            for i, itf in enumerate(self.interfaces):
                if s < float(itf.position_at(u, zm, t_total)):
                    k = i
                    break
            if pieces and pieces[-1][0] == k:
                pieces[-1][2] = z1
            else:
                pieces.append([k, z0, z1])
        names = [r.name for r in self.layers]
        out: list[tuple[str, float, float]] = []
        host = names.index(self.oxide.params["host"]) if self.oxide is not None else -1
        share = min(1.0, 2.0 * float(self.oxide.params["thickness"]) / t_total) if self.oxide is not None else 0.0
        for k, z0, z1 in pieces:
            if k != host or share == 0.0:
                out.append((names[k], z0, z1))
                continue
            ox = share * (z1 - z0)
            at_entrance, at_exit = z0 == 0.0, z1 == t_total
            if at_entrance == at_exit:  # both surfaces or none: split
                first, last = 0.5 * ox, 0.5 * ox
            else:
                first, last = (ox, 0.0) if at_entrance else (0.0, ox)
            if first > 0:
                out.append((self.oxide.name, z0, z0 + first))
            if z1 - last > z0 + first:
                out.append((names[k], z0 + first, z1 - last))
            if last > 0:
                out.append((self.oxide.name, z1 - last, z1))
        return out

    def parameters(self, y: Any, x: Any) -> dict[str, np.ndarray]:
        """Per-position parameters of the regions.

        Parameters
        ----------
        y, x : array_like  [Å]
            Scan positions (broadcast together).

        Returns
        -------
        dict[str, numpy.ndarray]
            Keys "<region>.<param>", arrays of the broadcast shape, for every region that has them:
            ``density`` [g/cm³] and ``sro_peak`` [Å⁻¹] (constant, or linear between the ``_inner`` and
            ``_outer`` values across the layer at mid-thickness, clipped to the end values outside it);
            ``grain`` (int, index into ``grain_orientations``, from ``grain_edges`` along the interface);
            ``lif_seed`` (int64, distinct for every scan pixel, derived from the base seed and the pixel
            index). ``variation_rms`` (see `Region`) modulates density and sro_peak smoothly in (y, x).
            Also "depth" [Å], the normal distance from the first interface at mid-thickness.
        """
        s, u = self._coords(y, x)
        _, bounds = self.layer_bounds(y, x)
        out: dict[str, np.ndarray] = {}
        if bounds.shape[-1]:
            out["depth"] = s - bounds[..., 0]
        iy = np.rint((np.broadcast_to(np.asarray(y, float), s.shape) - self.origin[0]) / self.step).astype(np.int64)
        ix = np.rint((np.broadcast_to(np.asarray(x, float), s.shape) - self.origin[1]) / self.step).astype(np.int64)
        for k, region in enumerate(self.regions):
            p = region.params
            lo = bounds[..., k - 1] if 0 < k <= bounds.shape[-1] else None
            hi = bounds[..., k] if k < bounds.shape[-1] and k < len(self.layers) else None
            for key in ("density", "sro_peak"):
                if key in p:
                    out[f"{region.name}.{key}"] = np.full(s.shape, float(p[key]))
                elif f"{key}_inner" in p and f"{key}_outer" in p:
                    if lo is not None and hi is not None:
                        w = np.clip((s - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)
                    else:
                        w = np.zeros(s.shape)
                    out[f"{region.name}.{key}"] = p[f"{key}_inner"] + w * (p[f"{key}_outer"] - p[f"{key}_inner"])
            if "variation_rms" in p and float(p["variation_rms"]) > 0:
                yx = np.stack(np.broadcast_arrays(np.asarray(y, float), np.asarray(x, float)), axis=-1)
                eps = float(p["variation_rms"]) * smooth_field(
                    yx, length=float(p.get("variation_length", 200.0)), seed=int(p.get("variation_seed", k))
                )
                if f"{region.name}.sro_peak" in out:
                    out[f"{region.name}.sro_peak"] = out[f"{region.name}.sro_peak"] * (1 + eps)
                if f"{region.name}.density" in out:  # Q1 ∝ ρ^(1/3): δρ/ρ = 3 δQ/Q to first order
                    out[f"{region.name}.density"] = out[f"{region.name}.density"] * (1 + 3 * eps)
            if "grain_edges" in p:
                out[f"{region.name}.grain"] = np.searchsorted(np.asarray(p["grain_edges"], float), u, side="right")
            if "lif_seed" in p:
                n_pix = self.field_shape[0] * self.field_shape[1]
                out[f"{region.name}.lif_seed"] = int(p["lif_seed"]) * n_pix + iy * self.field_shape[1] + ix
        return out

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (store with ``json.dumps`` in an HDF5 attribute)."""
        return {
            "name": self.name,
            "layers": [r.to_dict() for r in self.layers],
            "interfaces": [i.to_dict() for i in self.interfaces],
            "oxide": self.oxide.to_dict() if self.oxide is not None else None,
            "thickness": self.thickness,
            "field_shape": list(self.field_shape),
            "step": self.step,
            "origin": list(self.origin),
            "normal_axis": self.normal_axis,
        }

    def to_json(self) -> str:
        """`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    def __hash__(self) -> int:  # hashable (e.g. as a cache key) although Region.params are dicts
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> Scene:
        """Inverse of `to_dict` (also accepts the JSON string of `to_json`)."""
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, Mapping):
            raise TypeError(f"data={data!r} must be a mapping from Scene.to_dict or its JSON string")
        d = dict(data)
        return cls(
            name=d["name"],
            layers=tuple(Region(**r) for r in d["layers"]),
            interfaces=tuple(Interface(**i) for i in d["interfaces"]),
            oxide=Region(**d["oxide"]) if d.get("oxide") is not None else None,
            thickness=d["thickness"],
            field_shape=tuple(d["field_shape"]),
            step=d["step"],
            origin=tuple(d["origin"]),
            normal_axis=d["normal_axis"],
        )


# ================================================================================================================
# the study's two interfaces
# ================================================================================================================
#: Type 1 density next to Li [g/cm³]: an assumption until the hypothesis tests (fitting.hypotheses) measure it.
TYPE1_DENSITY = 2.0


def _type1_outer_density(inner: float, q_inner: float, q_outer: float) -> float:
    """Density that moves the SRO peak from q_inner to q_outer if Q₁ ∝ ρ^(1/3) (uniform dilation)."""
    return inner * (q_outer / q_inner) ** 3


def bottom(
    *,
    thickness: float = DEFAULT_THICKNESS,
    field_shape: tuple[int, int] = (60, 90),
    step: float = 40.0,
    type1_width: float = 150.0,
    type2_width: float = 350.0,
    li_side: float = 1200.0,
    tilt: float = 80.0,
    roughness: float = 20.0,
    correlation_length: float = 400.0,
    oxide_thickness: float = 15.0,
    variation_rms: tuple[float, float] = (0.03, 0.02),
    seed: int = 1,
) -> Scene:
    """The study's bottom interface: Li metal | SEI Type 1 | SEI Type 2 with LiF nanocrystals | Cu grains.

    Numbers from the study (Koh, Detsi, Stach): SEI 50–60 nm between a Li grain and several Cu grains,
    layered as Type 1 ≈ 15 nm next to Li and Type 2 ≈ 35 nm next to Cu; Type 1 first SRO peak 0.33 Å⁻¹
    (std 0.019 over the map), Type 2 isotropic SRO ≈ 0.295 Å⁻¹ plus defective LiF crystallites whose
    orientation changes from pixel to pixel (4 nm steps) and whose (111) is weak (F vacancies); Li₂O rings
    in the Li region from surface oxidation during lift-out; 90 × 60 positions at 4 nm. Local structural
    variation (assumption): Type 1 SRO peak and density vary smoothly by 3 % rms (correlation 12 nm), Type 2
    by 2 %; with noise and mixing this is meant to give map spreads like the observed std 0.019 Å⁻¹.

    Parameters
    ----------
    thickness : float  [Å]
        Lamella thickness (default 600 Å = 60 nm, an assumption).
    field_shape : (int, int)
        (n_y, n_x) scan positions; layers are stacked along x.
    step : float  [Å]
        Scan step.
    type1_width, type2_width : float  [Å]
        Layer widths at mid-thickness (150 and 350 Å from the study).
    li_side : float  [Å]
        Position of the Li | Type 1 interface along x.
    tilt : float  [Å]
        Shift of every interface between the lamella's entrance and exit surface (80 Å over 600 Å ≈ 7.6°,
        an assumption that produces mixed pixels over 2 scan steps).
    roughness : float  [Å]
        Rms roughness of every interface (assumption; keeps the 150 Å Type 1 layer continuous).
    correlation_length : float  [Å]
        Roughness correlation length along the interface.
    oxide_thickness : float  [Å]
        Li₂O on each lamella surface inside the Li metal (assumption: a few nm of native oxide).
    variation_rms : (float, float)
        Relative rms of the smooth local variation of Type 1 and Type 2 (see `Region`); 0 switches it off.
    seed : int
        Seeds the roughness profiles (interface k uses seed + k) and the per-pixel LiF seeds.

    Returns
    -------
    Scene
    """
    ny = int(field_shape[0])
    along = (ny - 1) * step
    cu_edges = (0.3 * along, 0.55 * along, 0.8 * along)
    layers = (
        Region(name="li", kind="li_metal", params={"grain_edges": (), "grain_orientations": ((0, 0, 1),)}),
        Region(
            name="type1",
            kind="sei_type1",
            params={
                "density": TYPE1_DENSITY,
                "sro_peak": 0.33,
                "variation_rms": float(variation_rms[0]),
                "variation_length": 120.0,
                "variation_seed": int(seed) + 100,
            },
        ),
        Region(
            name="type2",
            kind="sei_type2",
            params={
                "sro_peak": 0.295,
                "variation_rms": float(variation_rms[1]),
                "variation_length": 120.0,
                "variation_seed": int(seed) + 101,
                "lif_volume_fraction": 0.05,
                "lif_f_vacancy": 0.25,
                "lif_diameter": 30.0,
                "lif_seed": int(seed),
            },
        ),
        Region(
            name="cu",
            kind="cu",
            params={"grain_edges": cu_edges, "grain_orientations": ((0, 0, 1), (1, 1, 1), (0, 1, 1), (1, 1, 2))},
        ),
    )
    positions = (li_side, li_side + type1_width, li_side + type1_width + type2_width)
    interfaces = tuple(
        Interface(position=p, tilt=tilt, roughness=roughness, correlation_length=correlation_length, seed=int(seed) + k)
        for k, p in enumerate(positions)
    )
    oxide = Region(name="li2o", kind="li2o", params={"host": "li", "thickness": float(oxide_thickness)})
    return Scene(
        name="bottom",
        layers=layers,
        interfaces=interfaces,
        oxide=oxide,
        thickness=thickness,
        field_shape=field_shape,
        step=step,
    )


def top(
    *,
    thickness: float = DEFAULT_THICKNESS,
    field_shape: tuple[int, int] = (60, 90),
    step: float = 40.0,
    type1_width: float = 400.0,
    li_side: float = 1400.0,
    tilt: float = 120.0,
    roughness: tuple[float, float] = (20.0, 60.0),
    correlation_length: float = 400.0,
    oxide_thickness: float = 15.0,
    sro_peak: tuple[float, float] = (0.34, 0.295),
    variation_rms: float = 0.02,
    seed: int = 2,
) -> Scene:
    """The study's top interface: Li metal | SEI Type 1 with density falling outwards | vitrified electrolyte.

    Numbers from the study: SEI ≈ 40 nm, only Type 1; its SRO peak shifts from ≈ 0.34 to 0.295 Å⁻¹ moving
    away from Li (denser next to Li), map mean 0.326 Å⁻¹ with a broad spread (std 0.026) because the
    uneven SEI/electrolyte interface puts both along the beam; electrolyte SRO ≈ 0.285 Å⁻¹.
    The outer density follows from Q₁ ∝ ρ^(1/3): ρ_out = ρ_in·(0.295/0.34)³ ≈ 0.65 ρ_in (assumption).

    Parameters
    ----------
    thickness : float  [Å]
        Lamella thickness (default 600 Å, an assumption).
    field_shape : (int, int)
        (n_y, n_x); layers are stacked along x.
    step : float  [Å]
        Scan step.
    type1_width : float  [Å]
        SEI width at mid-thickness (400 Å from the study).
    li_side : float  [Å]
        Position of the Li | SEI interface along x.
    tilt : float  [Å]
        Interface shift through the lamella (assumption).
    roughness : (float, float)  [Å]
        Rms roughness of the Li|SEI and the SEI|electrolyte interface (the latter rougher, as observed).
    correlation_length : float  [Å]
    oxide_thickness : float  [Å]
        Li₂O per lamella surface in the Li metal.
    sro_peak : (float, float)  [Å⁻¹]
        Type 1 SRO peak next to Li and at the electrolyte side (study: ≈ 0.34 → 0.295). A linear gradient
        gives a map mean of ≈ 0.317 Å⁻¹ for the pure layer; the study's 0.326 (std 0.026) includes pixels
        mixed with Li and electrolyte, so tune the outer value against the synthetic peak map if needed.
    variation_rms : float
        Relative rms of the smooth local variation of Type 1 on top of its gradient (see `Region`).
    seed : int
        Seeds the roughness profiles.

    Returns
    -------
    Scene
    """
    q_in, q_out = float(sro_peak[0]), float(sro_peak[1])
    if not (0 < q_out <= q_in):
        raise ValueError(
            f"sro_peak={sro_peak!r} Å⁻¹ must be (inner, outer) with 0 < outer <= inner (density falls outwards)"
        )
    layers = (
        Region(name="li", kind="li_metal", params={"grain_edges": (), "grain_orientations": ((0, 0, 1),)}),
        Region(
            name="type1",
            kind="sei_type1",
            params={
                "density_inner": TYPE1_DENSITY,
                "density_outer": _type1_outer_density(TYPE1_DENSITY, q_in, q_out),
                "sro_peak_inner": q_in,
                "sro_peak_outer": q_out,
                "variation_rms": float(variation_rms),
                "variation_length": 120.0,
                "variation_seed": int(seed) + 100,
            },
        ),
        Region(name="electrolyte", kind="electrolyte", params={"sro_peak": 0.285}),
    )
    interfaces = (
        Interface(
            position=li_side,
            tilt=tilt,
            roughness=float(roughness[0]),
            correlation_length=correlation_length,
            seed=int(seed),
        ),
        Interface(
            position=li_side + type1_width,
            tilt=tilt,
            roughness=float(roughness[1]),
            correlation_length=correlation_length,
            seed=int(seed) + 1,
        ),
    )
    oxide = Region(name="li2o", kind="li2o", params={"host": "li", "thickness": float(oxide_thickness)})
    return Scene(
        name="top",
        layers=layers,
        interfaces=interfaces,
        oxide=oxide,
        thickness=thickness,
        field_shape=field_shape,
        step=step,
    )
