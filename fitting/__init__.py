"""sei-send: `fitting` package (see README for the layout)."""

from importlib.metadata import PackageNotFoundError as _PNF
from importlib.metadata import version as _version

try:
    __version__ = _version("sei-send")
except _PNF:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
