"""Coverage-directed stimulus: draw runs of new seeds until the named coverage bins are hit,
then write the fewest vector files that hit them together (docs/coverage.md §7).

Run ``i`` (0 .. budget - 1) is the spec's run with seed ``(seed + i) mod 2**32``: the random
source and the random encoder draw from the seed, so each seed is new stimulus.  With
``scale`` (a random source only), run ``i`` also draws its source codes from the range
``SCALE_SCHEDULE`` entry ``i mod 5`` gives.  Each run is simulated with coverage and without
traces; the search stops as soon as every reachable bin asked for has been hit, or when the
budget is spent.  A greedy set cover then picks runs: each time the run hitting the most bins
not yet hit (the earliest run on ties), until no run adds a bin.  Each chosen run is written as
``refmodel gen --seed S`` (with ``scale``: ``--seed S --range LO HI``) would write it, so the
files are the same bytes.  The whole is deterministic for a spec, its bins, its budget and
``scale``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from refmodel.coverage import Coverage, CoverageError, input_coverage
from refmodel.encode import SEED_MAX
from refmodel.errors import NetworkError
from refmodel.generate import generate
from refmodel.stimulus import build_stimulus, input_format

__all__ = ["Directed", "wanted_bins", "seed_varies", "scale_schedule", "run_coverage", "directed"]


@dataclasses.dataclass(frozen=True)
class Directed:
    """What a coverage-directed generation did: the runs spent, the seeds chosen with the
    source range of each (``(lo, hi)``, or the spec's range, None for the whole, without
    ``scale``) and their files, the reachable bins asked for that were hit and those that
    stayed unhit, and the bins asked for that are unreachable ({(layer, bin): reason})."""

    runs: int
    seeds: tuple
    ranges: tuple
    files: tuple
    hit: tuple
    unhit: tuple
    unreachable: dict


def seed_varies(stimulus) -> bool:
    """Whether the stimulus changes with the seed: a random source or the random encoder."""
    return stimulus.source == "random" or stimulus.encoding == "random"


def scale_schedule(spec) -> tuple:
    """The source ranges of ``scale``, run ``i`` taking entry ``i mod 5``: over the codes
    ``m .. M`` of the format the random source draws, with ``d = (M - m) // 8``, the whole
    ``(m, M)``, then ``(m, m)``, ``(M, M)``, ``(m, m + d)``, ``(M - d, M)``."""
    stim = spec.stimulus
    if stim.source != "random":
        raise NetworkError(spec.network.name, "stimulus.source", stim.source,
                           "is not 'random': --scale draws the range of a random source's codes")
    fmt = input_format(spec.network, stim, spec.where)
    m, M, d = fmt.min_int, fmt.max_int, (fmt.max_int - fmt.min_int) // 8
    return (m, M), (m, m), (M, M), (m, m + d), (M - d, M)


def run_coverage(spec, seed: int, bounds=None) -> Coverage:
    """The coverage of the spec's run with ``seed`` and the source range ``bounds`` (None:
    the spec's), the network input's bins first."""
    stim = dataclasses.replace(spec.stimulus, seed=seed, range=spec.stimulus.range if bounds is None else bounds)
    spec.network.check_run(stim.batch, stim.timesteps, [], keep_traces=False,
                           stimulus="analog" if stim.encoding == "analog" else "spikes")
    encoder, stimulus = build_stimulus(spec, stim)
    result = spec.network.run(stimulus, stim.timesteps, coverage=True)
    return Coverage({"input": input_coverage(encoder), **result.coverage.layers})


def wanted_bins(coverage: Coverage, names) -> list:
    """The (layer, bin) pairs ``names`` asks for: "all", or a list of ``LAYER.BIN`` (one bin)
    and ``BIN`` (that bin in every layer that has it); an unknown name is an error."""
    every = coverage.bins()
    if names == "all":
        return every
    chosen = []
    for name in names:
        layer, _, bin_name = name.rpartition(".")
        matches = [pair for pair in every if pair[1] == bin_name and (not layer or pair[0] == layer)]
        if not matches:
            raise CoverageError(f"--cover names {name!r}, which is no bin of this network (its bins: "
                                f"{', '.join(sorted({b for _, b in every}))})")
        chosen += [pair for pair in matches if pair not in chosen]
    return chosen


def _hits(coverage: Coverage, bins) -> frozenset:
    return frozenset(pair for pair in bins if coverage.hit(*pair))


def directed(spec, out_dir, names="all", *, budget: int, scale=False, record="all", progress=None) -> Directed:
    """Draw up to ``budget`` runs of ``spec`` until the bins ``names`` (see ``wanted_bins``)
    are hit, with ``scale`` over the source ranges of ``scale_schedule``; write the chosen runs
    into ``out_dir`` as ``<network>_seed<S>.h5`` (with ``scale``:
    ``<network>_seed<S>_range<LO>_<HI>.h5``).
    ``progress(i, hit, wanted)`` is called after each run."""
    schedule = scale_schedule(spec) if scale else (spec.stimulus.range,)

    def draw(i):
        return (spec.stimulus.seed + i) % (SEED_MAX + 1), schedule[i % len(schedule)]

    seed, bounds = draw(0)
    first = run_coverage(spec, seed, bounds)
    wanted = wanted_bins(first, names)
    unreachable = {pair: first.layers[pair[0]].unreachable[pair[1]] for pair in wanted
                   if pair[1] in first.layers[pair[0]].unreachable}
    reachable = [pair for pair in wanted if pair not in unreachable]
    runs = [(seed, bounds, _hits(first, reachable))]
    union = set(runs[0][2])
    if progress is not None:
        progress(1, len(union), len(reachable))
    varies = seed_varies(spec.stimulus)
    while varies and len(union) < len(reachable) and len(runs) < budget:
        seed, bounds = draw(len(runs))
        hits = _hits(run_coverage(spec, seed, bounds), reachable)
        runs.append((seed, bounds, hits))
        union |= hits
        if progress is not None:
            progress(len(runs), len(union), len(reachable))
    chosen, covered = [], set()
    while True:
        seed, bounds, hits = runs[max(range(len(runs)), key=lambda i: (len(runs[i][2] - covered), -i))]
        if not hits - covered:
            break
        chosen.append((seed, bounds))
        covered |= hits
    chosen = chosen or [draw(0)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for seed, bounds in chosen:
        tail = f"_range{bounds[0]}_{bounds[1]}" if scale else ""
        path = out_dir / f"{spec.network.name}_seed{seed}{tail}.h5"
        generate(spec, path, seed=seed, range=bounds, record=record)
        files.append(str(path))
    return Directed(len(runs), tuple(seed for seed, _ in chosen), tuple(bounds for _, bounds in chosen), tuple(files),
                    tuple(p for p in reachable if p in covered), tuple(p for p in reachable if p not in covered),
                    unreachable)
