"""Numba kernels: integers only, no Python objects inside."""
