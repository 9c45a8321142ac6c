"""Write ``py4dstem_datacube.h5``: a tiny file in the layout py4DSTEM 0.14 writes for a calibrated DataCube.

py4DSTEM cannot be installed next to this project (it pins numpy<2), so this file was NOT written by py4DSTEM.
It was written by emdfile (0.0.16) — the library py4DSTEM 0.14 itself writes with — following what
``py4DSTEM.save(path, datacube)`` does in py4DSTEM 0.14.18 (github.com/py4dstem/py4DSTEM, read from its source):

* ``DataCube(data)`` (py4DSTEM/datacube/datacube.py) is an emdfile ``Array`` named "datacube" with units
  "pixel intensity" and dim names Rx, Ry, Qx, Qy, placed in a new ``Root`` named "datacube_root"; its
  ``Calibration`` (py4DSTEM/data/calibration.py, an emdfile ``Metadata``) lives in the root's metadata as
  "calibration" and starts with Q_pixel_size=1, R_pixel_size=1, Q/R_pixel_units="pixels", QR_flip=False.
* ``DataCube.calibrate()`` sets the dim vectors: R dims ``arange(N) * R_pixel_size`` [R_pixel_units], Q dims
  ``-origin + arange(N) * Q_pixel_size`` [Q_pixel_units] (origin (0, 0) unless qx0_mean/qy0_mean are set);
  emdfile stores a linear dim as its first two values.
* ``py4DSTEM.save`` (py4DSTEM/io/save.py) adds ``_root_treepath`` (the datacube's tree path without its own
  name: "") to the calibration, and ``Calibration.to_h5`` adds ``_target_paths`` (["/datacube"]) before
  emdfile writes it.
* The HDF5 groups carry ``python_class`` = the Python class name: "DataCube" and "Calibration" (emdfile writes
  ``self.__class__.__name__``; here the emdfile base classes are used and the two attributes are set to the
  names py4DSTEM's subclasses write). ``authoring_program`` is "emdfile" (py4DSTEM does not set it).

Values (chosen for the tests, as a user would set them): Q pixel 0.0123 Å⁻¹ ("A^-1"), R pixel 2.5 nm ("nm"),
origin (qx0_mean, qy0_mean) = (4.0, 5.0) px, convergence_semiangle_mrad 1.5; data[i, j, k, l] =
i*1000 + j*100 + k*10 + l (uint16), shape (3, 4, 8, 10).

Checked against a file py4DSTEM did write: rosettasciio's test file ``rsciio/tests/data/emd/py4DSTEM_size2x3x4x5.h5``
(added by rosettasciio pull request #508, "py4DSTEM data saved with EMD v1.0"; GPL-licensed, so not copied here)
has the same groups, the same ``emd_group_type``/``python_class`` attributes, the same file attributes and the
same calibration keys stored with the same emdfile ``type`` tags as this fixture (which adds qx0_mean, qy0_mean
and convergence_semiangle_mrad, as py4DSTEM's origin and probe fits do).

Run from the repository root: ``python tests/data/make_py4dstem_fixture.py``.
"""

from __future__ import annotations

from pathlib import Path

import emdfile
import h5py
import numpy as np

OUT = Path(__file__).with_name("py4dstem_datacube.h5")
SHAPE = (3, 4, 8, 10)
Q_PIXEL = 0.0123  # [Å⁻¹]
R_PIXEL = 2.5  # [nm]
ORIGIN = (4.0, 5.0)  # [px]
SEMIANGLE = 1.5  # [mrad]


def data() -> np.ndarray:
    i, j, k, l = np.indices(SHAPE)
    return (i * 1000 + j * 100 + k * 10 + l).astype(np.uint16)


def main() -> None:
    d = data()
    dims = [
        np.arange(SHAPE[0]) * R_PIXEL,
        np.arange(SHAPE[1]) * R_PIXEL,
        -ORIGIN[0] + np.arange(SHAPE[2]) * Q_PIXEL,
        -ORIGIN[1] + np.arange(SHAPE[3]) * Q_PIXEL,
    ]
    cube = emdfile.Array(
        data=d, name="datacube", units="pixel intensity", dims=dims, dim_units=["nm", "nm", "A^-1", "A^-1"],
        dim_names=["Rx", "Ry", "Qx", "Qy"],
    )  # fmt: skip
    root = emdfile.Root(name="datacube_root")
    root.tree(cube)
    cal = emdfile.Metadata(name="calibration")
    for k, v in {
        "Q_pixel_size": Q_PIXEL, "R_pixel_size": R_PIXEL, "Q_pixel_units": "A^-1", "R_pixel_units": "nm",
        "QR_flip": False, "qx0_mean": ORIGIN[0], "qy0_mean": ORIGIN[1], "convergence_semiangle_mrad": SEMIANGLE,
        "_root_treepath": "", "_target_paths": ["/datacube"],
    }.items():  # fmt: skip
        cal[k] = v
    root.metadata = cal
    if OUT.exists():
        OUT.unlink()
    emdfile.save(str(OUT), root)
    with h5py.File(OUT, "a") as f:
        f["datacube_root/datacube"].attrs["python_class"] = "DataCube"
        f["datacube_root/metadatabundle/calibration"].attrs["python_class"] = "Calibration"
        f.attrs["UUID"] = "00000000-0000-4000-8000-000000000014"  # fixed, so that the fixture is reproducible
        f.attrs["authoring_user"] = ""


if __name__ == "__main__":
    main()
