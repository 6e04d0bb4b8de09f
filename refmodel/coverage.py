"""Functional coverage: how often a run hit each corner case of each layer (docs/coverage.md).

A *bin* is a named condition on a register or signal of one layer kind (an accumulator write
above its range, a Vm exactly at its threshold, a tie in a pooling window, ...).  A run counts
the hits of every bin of every layer per channel, bit-exactly from the integers the kernels
compute (``Network.run(..., coverage=True)``).  A bin that the layer's formats and settings
prove can never be hit is *unreachable*, with the reason; it is not a hole.

``Coverage`` holds the counts of one run or of many merged: per layer a ``LayerCoverage``
(its kind, hits per bin per channel, the unreachable bins and why, and how many runs hit each
bin).  The network input's bins (the encoder's pixels) are under the name ``"input"``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from refmodel.errors import RefmodelError

__all__ = ["CoverageError", "LayerCoverage", "Coverage", "INPUT_BINS", "input_coverage", "network_digest"]

#: The bins of the network input, counted per pixel of each sample (docs/coverage.md §5).
INPUT_BINS = ("pixel_zero", "pixel_min", "pixel_full_scale", "random_period")


class CoverageError(RefmodelError):
    """Coverage that cannot be merged or checked as asked."""

    def __init__(self, message):
        super().__init__(message)


@dataclass
class LayerCoverage:
    """The coverage of one layer.

    kind: the layer's kind ("input" for the network input).
    hits: {bin: int64 counts per channel} of every bin of the kind, in the kind's order.
    unreachable: {bin: reason} of the bins its formats and settings prove can never be hit.
    runs: {bin: number of runs (files) whose counts of the bin are nonzero}.
    """

    kind: str
    hits: dict
    unreachable: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)

    def total(self, name: str) -> int:
        """Hits of bin ``name`` over every channel."""
        return int(self.hits[name].sum())

    def holes(self) -> list:
        """The reachable bins never hit."""
        return [name for name in self.hits if name not in self.unreachable and not self.total(name)]


@dataclass
class Coverage:
    """Coverage of a network over one run or more: ``layers`` {name: LayerCoverage} ("input"
    first, then the network's layers in order); ``runs`` the number of runs merged."""

    layers: dict
    runs: int = 1

    @classmethod
    def of_run(cls, hits: dict, kinds: dict, unreachable: dict) -> Coverage:
        """The coverage of one run: {layer: {bin: counts}}, {layer: kind}, {layer: {bin: reason}}."""
        layers = {}
        for name, bins in hits.items():
            layers[name] = LayerCoverage(kinds[name], {b: np.asarray(c, np.int64) for b, c in bins.items()},
                                         dict(unreachable.get(name, {})),
                                         {b: int(np.count_nonzero(c) > 0) for b, c in bins.items()})
        return cls(layers, 1)

    def bins(self):
        """(layer, bin) of every bin, in order."""
        return [(layer, name) for layer, cov in self.layers.items() for name in cov.hits]

    def hit(self, layer: str, name: str) -> int:
        """Hits of ``layer``'s bin ``name`` over every channel."""
        return self.layers[layer].total(name)

    def holes(self) -> list:
        """(layer, bin) of every reachable bin never hit."""
        return [(layer, name) for layer, cov in self.layers.items() for name in cov.holes()]

    def reachable(self) -> list:
        """(layer, bin) of every reachable bin."""
        return [(layer, name) for layer, cov in self.layers.items() for name in cov.hits if name not in cov.unreachable]

    def percent(self) -> float:
        """Hit reachable bins / reachable bins, in percent (100 when none is reachable)."""
        reachable = self.reachable()
        if not reachable:
            return 100.0
        return 100.0 * (len(reachable) - len(self.holes())) / len(reachable)

    def merged(self, other: Coverage) -> Coverage:
        """The bin-wise sum of two coverages of the same network (hits, runs); a bin is
        unreachable in the merge when it is in both."""
        if list(self.layers) != list(other.layers):
            raise CoverageError(f"cannot merge the coverage of layers {list(other.layers)} into {list(self.layers)}")
        layers = {}
        for name, mine in self.layers.items():
            theirs = other.layers[name]
            if mine.kind != theirs.kind or list(mine.hits) != list(theirs.hits):
                raise CoverageError(f"layer {name!r}: kind {theirs.kind!r} with bins {list(theirs.hits)} differs "
                                    f"from {mine.kind!r} with bins {list(mine.hits)}")
            hits = {}
            for b, counts in mine.hits.items():
                if counts.shape != theirs.hits[b].shape:
                    raise CoverageError(f"layer {name!r} bin {b!r}: {theirs.hits[b].shape[0]} channels, "
                                        f"not {counts.shape[0]}")
                hits[b] = counts + theirs.hits[b]
            unreachable = {b: why for b, why in mine.unreachable.items() if b in theirs.unreachable}
            runs = {b: mine.runs.get(b, 0) + theirs.runs.get(b, 0) for b in mine.hits}
            layers[name] = LayerCoverage(mine.kind, hits, unreachable, runs)
        return Coverage(layers, self.runs + other.runs)

    def table(self, per_channel: bool = False) -> str:
        """The report: per layer, each bin with its hits, the runs that hit it and its status
        (``hit``, ``HOLE`` or ``unreachable: reason``); the per-channel hits when asked; then the
        total percentage of reachable bins hit."""
        rows = [("layer", "bin", "hits", "runs", "status")]
        for layer, cov in self.layers.items():
            for name, counts in cov.hits.items():
                total = int(counts.sum())
                status = (f"unreachable: {cov.unreachable[name]}" if name in cov.unreachable
                          else "hit" if total else "HOLE")
                rows.append((f"{layer} ({cov.kind})", name, str(total), f"{cov.runs.get(name, 0)}/{self.runs}", status))
                if per_channel and counts.size > 1 and name not in cov.unreachable:
                    rows.append(("", "  per channel", " ".join(map(str, counts.tolist())), "", ""))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
        reachable = self.reachable()
        lines.append(f"{len(reachable) - len(self.holes())} of {len(reachable)} reachable bins hit "
                     f"({self.percent():.1f}%) over {self.runs} run{'s' if self.runs != 1 else ''}")
        return "\n".join(lines)


def network_digest(config: dict) -> str:
    """SHA-256 of the canonical JSON of a run config's network: files of one network (whatever
    their stimulus and seed) share it, and only their coverage may be merged."""
    text = json.dumps(config["network"], sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def input_coverage(encoder) -> LayerCoverage:
    """The bins of the network input, from the encoder's integer pixels ``x`` (N, C, ...),
    each pixel of each sample counted once, per channel (axis 1):

    pixel_zero: x = 0.  pixel_min: x = the format's min_int (analog input of a signed format).
    pixel_full_scale: x = full scale (the spike encoders' ``full_scale``; analog: max_int).
    random_period: a random encoder's generator repeats its state (period 2**32 - 1 draws).
    """
    x = encoder.x
    fmt = encoder.fmt
    per_channel = x.reshape(x.shape[0], x.shape[1] if x.ndim > 1 else 1, -1)
    unreachable = {}
    top = getattr(encoder, "full_scale", fmt.max_int)
    hits = {"pixel_zero": (per_channel == 0).sum(axis=(0, 2))}
    if encoder.spiking or not fmt.signed or fmt.min_int == 0:
        hits["pixel_min"] = np.zeros(per_channel.shape[1], np.int64)
        unreachable["pixel_min"] = ("the spike encoders take 0..full_scale: the minimum is pixel_zero"
                                    if encoder.spiking else "the input format is unsigned: its minimum is 0")
    else:
        hits["pixel_min"] = (per_channel == fmt.min_int).sum(axis=(0, 2))
    hits["pixel_full_scale"] = (per_channel == top).sum(axis=(0, 2))
    if top > fmt.max_int:
        unreachable["pixel_full_scale"] = f"full_scale {top} is beyond the pixel format {fmt} (max {fmt.max_int})"
    hits["random_period"] = np.zeros(per_channel.shape[1], np.int64)
    unreachable["random_period"] = ("a run of at most 2**24 timesteps draws fewer than the 2**32 - 1 states of a "
                                    "pixel's xorshift32 generator" if encoder.name == "random" else
                                    f"the {encoder.name} encoding draws no random numbers")
    hits = {name: np.asarray(hits[name], np.int64) for name in INPUT_BINS}
    return LayerCoverage("input", hits, unreachable, {name: int(np.any(c)) for name, c in hits.items()})
