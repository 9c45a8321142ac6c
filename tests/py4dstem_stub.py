"""py4DSTEM's reading path for a calibrated DataCube, transcribed from py4DSTEM 0.14.18 (py4DSTEM cannot be installed
here: it pins numpy<2).

What py4DSTEM adds to emdfile when it reads a file: (1) the module attribute ``_emd_hook = True``, through which
emdfile finds the classes named by the groups' ``python_class`` ("DataCube", "Calibration"); (2)
``DataCube._get_constructor_args`` (data, name, slicelabels, no calibration) and ``Calibration.from_h5``
(Metadata → Calibration); (3) in ``py4DSTEM.io.read.read``, after ``emdfile.read``, the calibration links: the
targets listed in ``_target_paths`` (relative to ``_root_treepath``) are registered and ``calibrate()`` sets the
datacube's dim vectors from ``Q_pixel_size``/``R_pixel_size`` and their units (``DataCube.calibrate``). Only
those pieces are reproduced here; everything else in a real session (virtual images, …) is not.
Sources: py4DSTEM/io/read.py, py4DSTEM/datacube/datacube.py, py4DSTEM/data/calibration.py, py4DSTEM/data/data.py.
"""

from __future__ import annotations

import emdfile
import numpy as np
from emdfile import Array, Metadata, Root

_emd_hook = True


class Calibration(Metadata):
    """py4DSTEM.data.Calibration: a Metadata dict with getters."""

    def __init__(self, name="calibration"):
        Metadata.__init__(self, name=name)
        self._targets = []

    def register_target(self, t):
        if t not in self._targets:
            self._targets.append(t)

    def calibrate(self):
        for t in self._targets:
            if hasattr(t, "calibrate"):
                t.calibrate()

    def get_Q_pixel_size(self):
        return self._params.get("Q_pixel_size")

    def get_R_pixel_size(self):
        return self._params.get("R_pixel_size")

    def get_Q_pixel_units(self):
        return self._params.get("Q_pixel_units")

    def get_R_pixel_units(self):
        return self._params.get("R_pixel_units")

    def get_origin_mean(self):
        return self._params.get("qx0_mean"), self._params.get("qy0_mean")

    @classmethod
    def from_h5(cls, group):
        md = Metadata.from_h5(group)
        cal = Calibration(name=md.name)
        cal._params.update(md._params)
        return cal


class DataCube(Array):
    """py4DSTEM.DataCube as far as reading and calibrating go."""

    def __init__(self, data, name="datacube", slicelabels=None, calibration=None):
        Array.__init__(
            self, data=data, name=name, units="pixel intensity", dim_names=["Rx", "Ry", "Qx", "Qy"],
            slicelabels=slicelabels,
        )  # fmt: skip
        Root(name=name + "_root").tree(self)

    @property
    def calibration(self):
        return self.root.metadata["calibration"]

    def calibrate(self):
        cal = self.calibration
        rpix, qpix = cal.get_R_pixel_size(), cal.get_Q_pixel_size()
        origin = cal.get_origin_mean()
        if origin is None or origin == (None, None):
            origin = (0, 0)
        self.set_dim(0, np.arange(self.shape[0]) * rpix, units=cal.get_R_pixel_units())
        self.set_dim(1, np.arange(self.shape[1]) * rpix, units=cal.get_R_pixel_units())
        self.set_dim(2, -origin[0] + np.arange(self.shape[2]) * qpix, units=cal.get_Q_pixel_units())
        self.set_dim(3, -origin[1] + np.arange(self.shape[3]) * qpix, units=cal.get_Q_pixel_units())

    @classmethod
    def _get_constructor_args(cls, group):
        ar = Array._get_constructor_args(group)
        return {"data": ar["data"], "name": ar["name"], "slicelabels": ar["slicelabels"], "calibration": None}


def read(path):
    """py4DSTEM.read for EMD 1.0 files: emdfile.read, then the calibration links (py4DSTEM/io/read.py)."""
    data = emdfile.read(str(path))
    if isinstance(data, DataCube):
        cal = data.calibration
    elif isinstance(data, Root):
        cal = data.metadata.get("calibration")
    else:
        cal = None
    if cal is not None:
        try:
            root_treepath = cal["_root_treepath"]
            target_paths = cal["_target_paths"]
            del cal._params["_target_paths"]
            for p in target_paths:
                p = p.replace(root_treepath, "")
                d = data.root.tree(p)
                cal.register_target(d)
        except KeyError:
            pass
        cal.calibrate()
    return data
