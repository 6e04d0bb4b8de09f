"""Slow, obviously-correct pure-Python twins of every kernel, written from the docs alone.

Python ints and explicit loops only; one module per block (fixed, conv, neurons, pooling).
"""
