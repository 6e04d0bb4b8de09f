"""Human-readable summary of a vector file (``refmodel inspect``)."""

from __future__ import annotations

import numpy as np

from refmodel.layers.base import SPIKE
from refmodel.vectors.reader import VectorFile


def spike_rate(vf: VectorFile, path) -> float:
    """Mean of a spike dataset (spikes per neuron per timestep), read one timestep at a time."""
    info = vf.info(path)
    total = sum(int(np.count_nonzero(values)) for values in vf.steps(path))
    return total / max(int(np.prod(info.shape)), 1)


def _line(info, vf, rate=True):
    text = f"{info.name} {info.shape} {info.fmt} [{' '.join(info.axes)}]"
    if rate and info.fmt == SPIKE and info.stepped:
        text += f"  spike rate {spike_rate(vf, info.path):.4f}"
    return text


def _spike_count_line(vf: VectorFile, layer) -> str:
    """The layer's mean output per neuron and timestep, from its spike count: its spike rate
    when it outputs spikes (known from the run config)."""
    counts, fmt = vf.spike_count(layer.name)
    mean = float(counts.sum()) / max(counts.size * vf.timesteps, 1)
    spikes = vf.network is not None and vf.network.sites[layer.name].output_format == SPIKE
    return f"    spike_count {counts.shape} {fmt}: {'spike rate' if spikes else 'mean output per timestep'} {mean:.4f}"


def summarize(vf: VectorFile) -> str:
    """Layers, shapes, formats, spike rate per layer (from its spike count, else from its spike
    trace), overflow and other counts."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(vf.encoding_params.items()))
    lines = [
        f"{vf.path}: refmodel-vectors version {vf.format_version} (written by refmodel {vf.refmodel_version})",
        f"seed {vf.seed}, timesteps {vf.timesteps}, batch {vf.batch}, config sha256 {vf.config_sha256}",
        f"stimulus: {vf.encoding} encoding{f' ({params})' if params else ''}",
    ]
    if vf.compression is not None:
        lines.insert(2, f"compression {vf.compression}")
    if vf.format_version < 2:
        lines.insert(1, "  version 1: no digests; values checked against their formats and chunk checksums only")
    lines += [f"  {_line(i, vf)}" for i in vf.datasets() if i.kind in ("input", "spikes")]
    lines.append(f"layers: {len(vf.layers)}")
    for la in vf.layers:
        extra = "".join(f" {k}={v}" for k, v in sorted(la.attrs.items()))
        lines.append(f"  {la.index} {la.name} ({la.kind}) {la.input_shape} -> {la.output_shape}{extra}")
        for info in vf.datasets():
            if info.layer == la.name and info.kind == "param":
                lines.append(f"    param {_line(info, vf)}")
            elif info.layer == la.name and info.kind == "trace":
                lines.append(f"    trace {_line(info, vf, rate=not la.spike_count)}")
        if la.spike_count:
            lines.append(_spike_count_line(vf, la))
        for event, counts in vf.counts(la.name).items():
            lines.append(f"    count {event}: total {int(counts.sum())}, max {int(counts.max())} per timestep")
    lines.append(f"outputs: {len(vf.outputs)}")
    lines += [f"  {_line(i, vf)}" for i in vf.datasets() if i.kind == "output"]
    return "\n".join(lines)
