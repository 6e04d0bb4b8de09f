"""Bit-exact comparison of integer arrays and of whole vector files, with first-mismatch reports."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from refmodel.vectors.reader import VectorFile
from refmodel.vectors.schema import TRACE_AXES, default_axes

#: Kinds of Mismatch: differing values, then structural differences.
KINDS = ("value", "shape", "format", "missing", "extra", "attribute")


@dataclass(frozen=True)
class Mismatch:
    """One difference between expected and actual data.

    ``kind`` is one of KINDS.  For ``value``: ``index`` (named by ``axes``) is the first
    differing element in row-major order (earliest timestep first), ``expected``/``got``
    its values, ``count`` the number of differing elements out of ``size``.  For the other
    kinds ``expected``/``got`` hold the differing shapes, formats or attribute values.
    """

    kind: str
    path: str = ""
    layer: str | None = None
    signal: str | None = None
    axes: tuple = ()
    index: tuple = ()
    expected: object = None
    got: object = None
    count: int = 0
    size: int = 0

    @property
    def location(self) -> dict:
        """``{axis: index}`` of the first differing element."""
        return dict(zip(self.axes, self.index))

    def __str__(self) -> str:
        what = ", ".join(f"{k} {v}" for k, v in (("layer", self.layer), ("signal", self.signal)) if v is not None)
        where = " ".join(x for x in (what, f"({self.path})" if self.path else "") if x) or "array"
        if self.kind == "value":
            at = " ".join(f"{a}={i}" for a, i in self.location.items())
            return (f"{where}: first mismatch at {at}: expected {self.expected}, got {self.got} "
                    f"({self.count} of {self.size} values differ)")
        if self.kind in ("missing", "extra"):
            return f"{where}: {'missing in the other file' if self.kind == 'missing' else 'only in the other file'}"
        return f"{where}: {self.kind} differs: expected {self.expected}, got {self.got}"


def _integers(arr, what):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{what} must be an integer array, got dtype {arr.dtype}")
    return arr


def first_mismatch(expected, actual, axes=None, *, at=None, path="", layer=None, signal=None):
    """The first difference between two integer arrays (any integer dtypes), or None.

    ``axes`` names the leading dimensions (extra ones are called d5, d6, ...); default the
    trace axes t, n, c, y, x less those in ``at``.  ``at`` (e.g. ``{"t": 3, "n": 0}``) gives
    the fixed leading coordinates of arrays that are one slice of a larger one, reported
    before the slice's own.  Differing shapes give a ``shape`` Mismatch; equal values of
    different dtypes are equal.
    """
    expected, actual = _integers(expected, "expected"), _integers(actual, "actual")
    at = dict(at or {})
    if axes is None:
        axes = tuple(a for a in TRACE_AXES if a not in at)
    names = tuple(at) + default_axes(expected.ndim, tuple(axes))
    common = dict(path=path, layer=layer, signal=signal, axes=names)
    if expected.shape != actual.shape:
        return Mismatch("shape", expected=expected.shape, got=actual.shape, **common)
    differ = expected != actual
    count = int(np.count_nonzero(differ))
    if count == 0:
        return None
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(differ)), differ.shape))
    return Mismatch("value", index=tuple(int(i) for i in at.values()) + index, expected=int(expected[index]),
                    got=int(actual[index]), count=count, size=int(expected.size), **common)


@dataclass
class Comparison:
    """Result of ``compare_files``: every difference, and mismatch counts per dataset."""

    golden: str
    other: str
    differences: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # dataset path -> (differing values, values compared)

    @property
    def equal(self) -> bool:
        return not self.differences

    @property
    def first(self):
        """The first value mismatch in causal order (parameters and input, then by timestep and
        layer, then outputs), else the first structural difference; None when equal."""
        values = [d for d in self.differences if d.kind == "value"]
        return values[0] if values else (self.differences[0] if self.differences else None)

    def report(self) -> str:
        """Human-readable summary: structural differences, the first mismatch, counts per signal."""
        if self.equal:
            return f"{self.other} equals {self.golden} ({sum(s for _, s in self.counts.values())} values compared)"
        lines = [f"{self.other} differs from {self.golden}:"]
        lines += [f"  {d}" for d in self.differences if d.kind != "value"]
        first = self.first
        if first is not None and first.kind == "value":
            lines.append(f"first mismatch: {first}")
        bad = [(p, c, s) for p, (c, s) in self.counts.items() if c]
        if bad:
            lines.append("mismatches per signal:")
            lines += [f"  {p}: {c} of {s}" for p, c, s in bad]
        return "\n".join(lines)


def _compare_dataset(a: VectorFile, b: VectorFile, ia, ib):
    """The value Mismatch of one dataset present in both files (None if equal), or a
    shape/format Mismatch; reads stepped datasets one timestep at a time."""
    common = dict(path=ia.path, layer=ia.layer, signal=ia.name)
    if ia.fmt != ib.fmt:
        return Mismatch("format", expected=str(ia.fmt), got=str(ib.fmt), **common)
    if ia.shape != ib.shape:
        return Mismatch("shape", expected=ia.shape, got=ib.shape, **common)
    if not ia.streamed:
        return first_mismatch(a.read(ia.path), b.read(ia.path), ia.axes, **common)
    first, count = None, 0
    for t, (xa, xb) in enumerate(zip(a.steps(ia.path), b.steps(ia.path), strict=True)):
        m = first_mismatch(xa, xb, ia.axes[1:], at={ia.axes[0]: t}, **common)
        if m is not None:
            count += m.count
            first = first or m
    return None if first is None else replace(first, count=count, size=int(np.prod(ia.shape)))


def compare_files(golden, other) -> Comparison:
    """Compare two vector files: header, layers, then every dataset value by value.

    Structural differences come first in ``differences``, then value mismatches in causal
    order: parameters and input, then by timestep (stimulus spikes, layers in order, counts),
    then spike counts and outputs.
    """
    with VectorFile(golden) as a, VectorFile(other) as b:
        result = Comparison(a.path, b.path)
        structure = [Mismatch("attribute", path=attr, expected=getattr(a, attr), got=getattr(b, attr))
                     for attr in ("timesteps", "batch", "seed", "config_digest", "encoding", "encoding_params")
                     if getattr(a, attr) != getattr(b, attr)]
        layers_b = {la.key: la for la in b.layers}
        for la in a.layers:
            lb = layers_b.pop(la.key, None)
            if lb is None:
                structure.append(Mismatch("missing", path=f"layers/{la.key}", layer=la.name))
                continue
            structure += [Mismatch("attribute", path=f"layers/{la.key}", layer=la.name, signal=f,
                                   expected=getattr(la, f), got=getattr(lb, f))
                          for f in ("kind", "input_shape", "output_shape", "attrs") if getattr(la, f) != getattr(lb, f)]
        structure += [Mismatch("extra", path=f"layers/{key}", layer=lb.name) for key, lb in layers_b.items()]
        values = []  # (causal order, Mismatch)
        infos_b = {i.path: i for i in b.datasets()}
        for ia in a.datasets():
            ib = infos_b.pop(ia.path, None)
            m = Mismatch("missing", path=ia.path, layer=ia.layer, signal=ia.name) if ib is None \
                else _compare_dataset(a, b, ia, ib)
            if m is None or m.kind == "value":
                result.counts[ia.path] = (m.count if m else 0, int(np.prod(ia.shape)))
            if m is not None and m.kind != "value":
                structure.append(m)
            elif m is not None:
                order = (2, m.index[0]) if ia.stepped else (3, 0) if ia.kind in ("spike_count", "output") else (1, 0)
                values.append((order, len(values), m))
        structure += [Mismatch("extra", path=p, layer=i.layer, signal=i.name) for p, i in infos_b.items()]
        result.differences = structure + [m for *_, m in sorted(values, key=lambda v: v[:2])]
        return result
