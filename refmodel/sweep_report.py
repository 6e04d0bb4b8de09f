"""The report of a sweep directory (docs/sweep.md): its jobs by result, the failures, the
slowest jobs, and the coverage of its files merged."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from refmodel.coverage import Coverage, CoverageError
from refmodel.sweep import FAILED, SweepError, read_manifest

__all__ = ["PLAN", "write_plan", "read_plan", "sweep_coverage", "summary"]

#: The sweep's plan: the spec, its options and its job names, written before the jobs run.
PLAN = "sweep.json"
SLOWEST = 5


def write_plan(directory, spec: str, options: dict, jobs) -> None:
    """``DIR/sweep.json``: the spec, the options and the job names of the sweep (atomically)."""
    from refmodel.coverage_report import write_text

    plan = {"spec": spec, "options": options, "jobs": [job.name for job in jobs]}
    write_text(Path(directory) / PLAN, json.dumps(plan, indent=1, sort_keys=True) + "\n")


def read_plan(directory) -> dict:
    """The plan of the sweep in ``directory``; a SweepError when it holds none."""
    path = Path(directory) / PLAN
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{directory}: holds no sweep ({PLAN} is missing)") from None
    except (OSError, ValueError) as err:
        raise SweepError(f"{path}: cannot be read ({err})") from None


def _structure(coverage: Coverage) -> tuple:
    """What coverages must share to merge: the layers, their kinds, bins and channels."""
    return tuple((layer, cov.kind, tuple((name, counts.shape) for name, counts in cov.hits.items()))
                 for layer, cov in coverage.layers.items())


def sweep_coverage(directory, entries) -> list:
    """The coverage of the files of ``entries`` that were generated, merged across variants
    and seeds: [(merged Coverage, [files])], one item per network structure (variants that
    change only values, a threshold or an overflow mode, merge into one)."""
    from refmodel.vectors import VectorFile

    groups = {}
    for entry in entries:
        if entry.get("result") in ("refmodel_error", "lost") or "sha256" not in entry:
            continue
        path = Path(directory) / entry["file"]
        if not path.is_file():
            continue
        with VectorFile(path) as vf:
            coverage = vf.coverage()
        if coverage is None:
            continue
        key = _structure(coverage)
        merged, files = groups.get(key, (None, []))
        groups[key] = (coverage if merged is None else merged.merged(coverage), files + [str(path)])
    return list(groups.values())


def summary(directory, per_channel: bool = False) -> tuple[str, list, bool]:
    """(the report text, the merged coverages as ``sweep_coverage`` gives them, whether every
    planned job ran and none failed)."""
    plan = read_plan(directory)
    entries = read_manifest(directory)
    planned = plan["jobs"]
    runs = [entries[name] for name in planned if name in entries]
    results = Counter(entry["result"] for entry in runs)
    missing = len(planned) - len(runs)
    lines = [f"sweep {directory}: {len(planned)} jobs of {plan['spec']}: "
             + ", ".join(f"{results[r]} {r}" for r in ("generated", "pass", *FAILED) if results[r])
             + (f", {missing} not run yet" if missing else "")]
    failed = [entry for entry in runs if entry["result"] in FAILED]
    for entry in failed:
        detail = entry.get("error") or entry.get("check", {}).get("first_mismatch") or \
            f"exit status {entry.get('check', {}).get('status')}: {entry.get('check', {}).get('tail', '')}"
        lines.append(f"  {entry['result']}: {entry['job']}: {detail}")
    timed = sorted((entry for entry in runs if "wall_s" in entry), key=lambda e: -e["wall_s"])[:SLOWEST]
    if timed:
        lines.append("slowest jobs: " + ", ".join(f"{e['job']} {e['wall_s']:.2f} s ({e['worker']})" for e in timed))
    try:
        coverages = sweep_coverage(directory, runs)
    except CoverageError as err:
        raise SweepError(f"{directory}: the coverage of its files does not merge: {err}") from None
    for merged, files in coverages:
        lines.append(f"coverage of {len(files)} file{'s' if len(files) != 1 else ''}, merged:")
        lines.append(merged.table(per_channel))
    return "\n".join(lines), coverages, not failed and not missing
