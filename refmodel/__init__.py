"""refmodel: a bit-exact fixed-point golden model of spiking CNN hardware."""

from refmodel.errors import RefmodelError
from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat, Rounding

__version__ = "0.1.0"

__all__ = ["RefmodelError", "QFormat", "Rounding", "Overflow", "FixedPointError", "FixedOverflowError", "__version__"]
