"""Writers run in child processes by tests/test_reliability.py (killed, interrupted or raced there).

Kept in an importable module so that a ``forkserver`` context can preload it once: every child then starts in
milliseconds with numpy, h5py, numba and the project already imported, and a test can afford tens of kills.
Each worker signals ``started`` when its set-up is done and the write it exercises begins.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fitting.io import load_scan
from fitting.pipeline import analyze_scan
from fitting.refine import Parameter, refine
from simkit.geometry import DetectorGeometry
from simkit.library import EntrySpec, build_library
from simkit.synth import synthesize_scan
from structures.scenes import Interface, Region, Scene

#: Detector of the reliability scans: small and fast, reaching 0.5 Å⁻¹ at the edge.
GEOMETRY = DetectorGeometry(shape=(64, 64), pixel_size=0.016)
#: Column thickness [Å] of the reliability library.
THICKNESS = 600.0


def library_specs(seed: int = 11) -> list[EntrySpec]:
    """Kinematic entries only (no multislice): seconds to build, enough to synthesise an amorphous scan."""
    return [
        EntrySpec(kind="vacuum"),
        EntrySpec(kind="sei_type1", params={"density": 2.0, "n_atoms": 300}, seed=seed),
        EntrySpec(kind="electrolyte", params={"n_atoms": 600}, seed=seed + 1),
    ]


def scene(field=(6, 12)) -> Scene:
    """Type 1 | electrolyte, one interface across the field [4 nm steps]."""
    return Scene(
        name="reliability",
        layers=(Region(name="t1", kind="sei_type1", params={"density": 2.0}), Region(name="el", kind="electrolyte")),
        interfaces=(Interface(position=field[0] * 20.0, tilt=0.0, roughness=0.0, correlation_length=100.0, seed=1),),
        thickness=THICKNESS,
        field_shape=field,
        step=40.0,
    )


def library(cache_dir, seed: int = 11):
    """The reliability library, built into (or loaded from) ``cache_dir``."""
    return build_library(library_specs(seed), geometry=GEOMETRY, thickness=THICKNESS, cache_dir=cache_dir,
                         progress=False, num_workers=1)  # fmt: skip


def write_scan(cache_dir: str, path: str, seed: int, started=None) -> None:
    """Synthesise the reliability scan to ``path`` (overwriting), lzf-compressed one row a chunk."""
    lib = library(cache_dir)
    if started is not None:
        started.set()
    synthesize_scan(scene(), path, library=lib, seed=seed, overwrite=True, compression="lzf", rows_per_chunk=1,
                    progress=False)  # fmt: skip


def build_entries(cache_dir: str, seed: int, started=None, barrier=None) -> None:
    """Build the reliability library (entries of ``seed``) into ``cache_dir``."""
    if barrier is not None:
        barrier.wait()
    if started is not None:
        started.set()
    library(cache_dir, seed=seed)


def write_analysis(scan_path: str, out_dir: str, started=None) -> None:
    """Analyse ``scan_path`` into ``out_dir`` with figures."""
    scan = load_scan(scan_path)
    if started is not None:
        started.set()
    analyze_scan(scan, out_dir, figures=True, refine_ellipse=False)


def refine_quadratic(checkpoint: str, started=None, pause: float = 0.0):
    """A two-parameter refinement of an analytic bowl (minimum at x = 0.3, y = −0.2), checkpointed."""

    def builder(p, rng):
        if pause:
            time.sleep(pause)
        return np.array([p["x"], p["y"]])

    if started is not None:
        started.set()
    return refine(
        [Parameter(name="x", start=0.0, lower=-1.0, upper=1.0), Parameter(name="y", start=0.0, lower=-1.0, upper=1.0)],
        builder=builder,
        objective=lambda v: float((v[0] - 0.3) ** 2 + 2.0 * (v[1] + 0.2) ** 2),
        checkpoint=checkpoint,
        max_evaluations=80,
        progress=False,
    )


def fingerprints(cache_dir: str, scan_path: str, seed: int) -> dict[str, str]:
    """SHA-256 of a structure, a library entry and a synthesised scan made with ``seed``."""
    import hashlib

    from structures.amorphous import type1_sei

    def sha(a) -> str:
        return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

    atoms = type1_sei(density=2.0, n_atoms=300, rng=seed, source="packing")  # the seeded builder (3 relaxed seeds ship)
    lib = library(cache_dir, seed=seed)
    synthesize_scan(scene(), scan_path, library=lib, seed=seed, overwrite=True, compression="lzf", progress=False)
    data = np.asarray(load_scan(scan_path, lazy=False).data)
    return {
        "structure": sha(np.round(atoms.get_positions(), 12)) + sha(atoms.numbers),
        "library": "".join(sha(e.pattern) for e in lib.entries),
        # which structure each entry was built from (shipped relaxed models: a seed picks one of a few)
        "library_sources": "|".join(str(e.info.get("source", "")) for e in lib.entries),
        "scan": sha(data),
    }


def existing_outputs(folder: Path) -> list[Path]:
    """Files directly in ``folder`` (none when it does not exist)."""
    return sorted(p for p in Path(folder).glob("*") if p.is_file()) if Path(folder).exists() else []
