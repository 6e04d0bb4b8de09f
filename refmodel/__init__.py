"""refmodel: a bit-exact fixed-point golden model of spiking CNN hardware."""

import os

# Numba's OpenMP threads spin 300,000 times at a barrier before they sleep (libgomp's default when
# the threads fit the cores): with one other busy process on a 2-core machine, vgg's simulation
# took 2.5-8x longer, 10,000 spins 2.3x, with no cost measured on a quiet machine
# (docs/performance.md, "Threads on a shared machine").  Set before Numba first loads libgomp; a
# value already in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from refmodel.errors import RefmodelError  # noqa: E402
from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat, Rounding  # noqa: E402

__version__ = "0.1.0"

__all__ = ["RefmodelError", "QFormat", "Rounding", "Overflow", "FixedPointError", "FixedOverflowError", "__version__"]
