"""tsrevel: a TripleSeat -> Revel connector that creates each catering order exactly once.

The public library API lives here; see docs/library.md.
"""

from tsrevel.version import __version__

__all__ = ["__version__"]
