"""Components of the forward model: simulated radial profiles on their own Q grid, and their constructors.

A component is one term Iₖ(Q) of μ = E·[Σₖ sₖ·(Iₖ ⊗ G)(α·Q) + B(Q)] (see :mod:`fitting.model`): the intensity per
detector pixel of a simulated pattern integrated by :mod:`simkit.radial` on the data's geometry, probe included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BACKGROUNDS", "Component", "as_components", "component_from_iq", "component_from_pattern"]

#: Background shapes accepted by ``background=`` and their parameter names.
BACKGROUNDS: dict[str | None, tuple[str, ...]] = {
    "power": ("bg_amplitude", "bg_exponent"),
    "exp": ("bg_amplitude", "bg_decay"),
    "poly2": ("bg_c0", "bg_c1", "bg_c2"),
    None: (),
}
#: Parameter names a component may not take.
RESERVED = frozenset({"q_scale", "blur_var", *(n for names in BACKGROUNDS.values() for n in names)})


@dataclass(frozen=True, kw_only=True, eq=False)
class Component:
    """A simulated radial profile used as one term of the forward model.

    Parameters
    ----------
    name : str
        Label; used as the name of its scale parameter and for nesting in :func:`fitting.hypotheses.compare`.
    q : ndarray, shape (n,)  [Å⁻¹]
        Strictly increasing Q grid of the component.
    intensity : ndarray, shape (n,)  [arbitrary, per detector pixel]
        Intensity per pixel (``RadialProfiles.mean``), probe already included. NaN entries (empty bins) are
        dropped.
    source : str
        Free text: how the component was made.
    """

    name: str
    q: np.ndarray
    intensity: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name={self.name!r}: a component needs a non-empty str name")
        if self.name in RESERVED:
            raise ValueError(f"name={self.name!r} is reserved for a model parameter; choose another component name")
        q = np.asarray(self.q, dtype=float)
        it = np.asarray(self.intensity, dtype=float)
        if q.ndim != 1 or it.shape != q.shape:
            raise ValueError(
                f"component {self.name!r}: q shape {q.shape} and intensity shape {it.shape} must be equal 1-D"
            )
        if q.size > 1 and not np.all(np.diff(q) > 0):
            raise ValueError(f"component {self.name!r}: q must be strictly increasing [Å⁻¹]")
        if np.count_nonzero(np.isfinite(it)) < 4:
            raise ValueError(f"component {self.name!r}: needs at least 4 finite intensity values")
        q.setflags(write=False)
        it.setflags(write=False)
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "intensity", it)


def _is_profiles(obj) -> bool:
    return hasattr(obj, "q") and hasattr(obj, "mean") and hasattr(obj, "count")


def _one_component(name: str, obj, q_data: np.ndarray | None) -> Component:
    if isinstance(obj, Component):
        return obj if obj.name == name else Component(name=name, q=obj.q, intensity=obj.intensity, source=obj.source)
    if _is_profiles(obj):
        mean = np.asarray(obj.mean, dtype=float)
        if mean.ndim != 1:
            raise ValueError(
                f"component {name!r}: RadialProfiles.mean has shape {mean.shape}; give a single 1-D profile"
            )
        return Component(name=name, q=np.asarray(obj.q, dtype=float), intensity=mean, source="RadialProfiles.mean")
    if isinstance(obj, tuple) and len(obj) == 2:
        return Component(name=name, q=np.asarray(obj[0], dtype=float), intensity=np.asarray(obj[1], dtype=float))
    arr = np.asarray(obj, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"component {name!r}: array of shape {arr.shape}; give a 1-D profile on the data's Q grid")
    if q_data is None or arr.shape != q_data.shape:
        raise ValueError(
            f"component {name!r}: bare array of length {arr.size} must lie on the data's Q grid "
            f"(length {None if q_data is None else q_data.size}); give (q, intensity) or a RadialProfiles instead"
        )
    return Component(name=name, q=q_data, intensity=arr, source="array on the data grid")


def as_components(components, q: np.ndarray | None = None) -> tuple[Component, ...]:
    """Normalise the accepted component specifications to a tuple of :class:`Component`.

    Parameters
    ----------
    components : Mapping[str, spec] or Sequence[spec]
        ``spec`` is a :class:`Component`, a ``RadialProfiles`` (its ``q`` and ``mean`` are used), a tuple
        ``(q [Å⁻¹], intensity)`` or a bare 1-D array on the data grid ``q``. Unnamed entries of a sequence are
        called ``c0, c1, …``.
    q : ndarray or None  [Å⁻¹]
        The data's Q grid (needed for bare arrays).

    Returns
    -------
    tuple of Component
    """
    if components is None:
        raise ValueError("components=None: give at least one component (Mapping name → profile, or a list)")
    if isinstance(components, (Component,)) or _is_profiles(components):
        components = [components]
    if isinstance(components, Mapping):
        items = [(str(k), v) for k, v in components.items()]
    elif isinstance(components, Sequence) and not isinstance(components, (str, bytes)):
        items = [(c.name if isinstance(c, Component) else f"c{i}", c) for i, c in enumerate(components)]
    elif isinstance(components, np.ndarray):
        arr = np.atleast_2d(components)
        items = [(f"c{i}", a) for i, a in enumerate(arr)]
    else:
        raise TypeError(f"components={type(components).__name__}: give a Mapping name → profile or a sequence")
    if len(items) == 0:
        raise ValueError("components is empty: the model needs at least one component")
    out = tuple(_one_component(n, v, q) for n, v in items)
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"component names {names} are not unique")
    return out


def component_from_pattern(pattern2d, plan, *, name: str = "pattern", statistic: str = "mean") -> Component:
    """A component from a simulated 2-D diffraction pattern, integrated by :mod:`simkit.radial`.

    Parameters
    ----------
    pattern2d : ndarray, shape (ny, nx)  [intensity per pixel]
        Simulated pattern on the *data's* detector grid (e.g. ``simkit.nbed.to_detector`` output).
    plan : simkit.radial.RadialPlan
        The plan used for the measured data (same geometry, bins and mask).
    name : str
    statistic : str
        Passed to ``plan.integrate``.

    Returns
    -------
    Component
        ``q`` = bin centres [Å⁻¹], ``intensity`` = mean per pixel.
    """
    pattern2d = np.asarray(pattern2d, dtype=float)
    if pattern2d.ndim != 2:
        raise ValueError(f"pattern2d has shape {pattern2d.shape}; give one 2-D pattern (ny, nx)")
    prof = plan.integrate(pattern2d, statistic=statistic)
    return Component(
        name=name, q=np.asarray(prof.q, float), intensity=np.asarray(prof.mean, float), source="simkit.radial"
    )


def component_from_iq(
    q: np.ndarray, iq: np.ndarray, semiangle: float, energy: float, geometry=None, *, name: str = "kinematic"
) -> Component:
    """A component from a kinematic I(Q), convolved with the probe by ``simkit.kinematic.probe_convolve``.

    Parameters
    ----------
    q : ndarray  [Å⁻¹]
        Grid of ``iq``.
    iq : ndarray  [Å² per atom]
        Kinematic (Debye) intensity.
    semiangle : float  [mrad]
        Probe convergence semi-angle.
    energy : float  [eV]
    geometry : simkit.geometry.DetectorGeometry or None
        The data's detector geometry; the result passes through :mod:`simkit.radial` on it.
    name : str

    Returns
    -------
    Component
    """
    from simkit import kinematic  # imported lazily: heavy, and lands independently

    prof = kinematic.probe_convolve(
        np.asarray(q, float), np.asarray(iq, float), semiangle=semiangle, energy=energy, geometry=geometry
    )
    return Component(
        name=name,
        q=np.asarray(prof.q, float),
        intensity=np.asarray(prof.mean, float),
        source=f"kinematic ⊗ probe ({semiangle} mrad, {energy:.0f} eV)",
    )
