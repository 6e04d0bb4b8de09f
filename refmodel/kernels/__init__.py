"""Numba kernels: integers only, no Python objects inside."""

from refmodel.kernels.conv import Weights, conv2d, linear

__all__ = ["conv2d", "linear", "Weights"]
