"""Slow, obvious reference implementations used as oracles by the tests.

Each fast kernel in the package has a plain NumPy twin here. Keep these simple enough to check by eye;
never import the function under test into its own reference. Add sections; do not rewrite others'.
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (used by the sections below)
