"""Waveforms of a vector file's traces as a value change dump (VCD, IEEE 1364-2005 §18), for
wave viewers such as GTKWave (docs/rtl-flow.md §6), written through pyvcd.

Time: timestep t is the clock cycle from t ns to t + 1 ns (timescale 100 ps, ``STEP`` = 10
units a timestep): ``clk`` rises at t ns, where every value of timestep t appears, and falls at
t + 0.5 ns; the integer ``timestep`` holds t.  Scopes: ``<network>.<layer>[.n<sample>].<signal>``
(the sample's scope when several samples are shown), one variable per element named after its
indices (``c2_y3_x4``; ``c1`` in a vector) holding its two's-complement code in a register of
the signal's declared width; the header's ``$comment`` gives each signal's format.  The header
has no ``$date``: the same file and options give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refmodel import __version__
from refmodel.errors import RefmodelError
from refmodel.files import AtomicOutput
from refmodel.fixed import QFormat

TIMESCALE = "100 ps"
#: VCD time units per timestep (1 ns).
STEP = 10
#: Default largest number of element signals in one wave file (``--max-signals``).
MAX_SIGNALS = 4096
#: Timesteps shown before and after the first mismatch in a mismatch VCD.
WINDOW = 8


class WaveError(RefmodelError):
    """A wave file refmodel refuses to write: too many signals, an empty selection, no pyvcd."""


@dataclass(frozen=True)
class Probe:
    """One signal of one sample: VCD variables ``names`` in ``scope``, holding ``values``
    (timesteps, elements) in format ``fmt``."""

    scope: tuple
    names: tuple
    fmt: QFormat
    values: np.ndarray


def element_names(axes, shape) -> tuple:
    """The variable name of each element of an array of ``shape`` (row-major), e.g. ``c2_y3_x4``."""
    return tuple("_".join(f"{a}{i}" for a, i in zip(axes, index)) or "value" for index in np.ndindex(*shape))


def _need_pyvcd():
    try:
        import vcd
    except ImportError:
        raise WaveError("VCD files are written through pyvcd: install refmodel's extra 'waves' "
                        "(pip install 'refmodel[waves]')") from None
    return vcd


def write_vcd(out, root: str, probes, *, start: int = 0, comment: str = "", marker=None, force: bool = False) -> None:
    """Write ``probes`` (their rows the timesteps ``start``, ``start + 1``, ...) under the scope
    ``root`` with ``clk`` and ``timestep``, and, when given, the 1-bit ``marker`` (one value per
    timestep) as ``<root>.mismatch``, into the VCD file ``out``, atomically."""
    vcd = _need_pyvcd()
    steps = probes[0].values.shape[0]
    with AtomicOutput(out, force=force) as target, open(target.tmp, "w", encoding="ascii", newline="\n") as f, \
            vcd.VCDWriter(f, timescale=TIMESCALE, date="", version=f"refmodel {__version__}", comment=comment,
                          init_timestamp=start * STEP) as writer:
        clk = writer.register_var(root, "clk", "wire", size=1, init=1)
        timestep = writer.register_var(root, "timestep", "integer", size=32, init=start)
        flag = None if marker is None else writer.register_var(root, "mismatch", "wire", size=1, init=int(marker[0]))
        variables = [[writer.register_var(p.scope, name, "reg", size=p.fmt.bits, init=int(v))
                      for name, v in zip(p.names, p.values[0])] for p in probes]
        for i in range(steps):
            time = (start + i) * STEP
            if i:
                writer.change(clk, time, 1)
                writer.change(timestep, time, start + i)
                if flag is not None:
                    writer.change(flag, time, int(marker[i]))
                for p, vars_ in zip(probes, variables):
                    for e in np.flatnonzero(p.values[i] != p.values[i - 1]):
                        writer.change(vars_[e], time, int(p.values[i, e]))
            writer.change(clk, time + STEP // 2, 0)
        writer.close((start + steps) * STEP)


def _formats_comment(vf, traces) -> str:
    """The header comment: the run, the time base, each signal's format."""
    formats = ", ".join(f"{layer}.{signal} {vf.trace_info(layer, signal).fmt}" for layer, signal in traces)
    return (f"refmodel vectors: seed {vf.seed}, config sha256 {vf.config_sha256}. Timestep t is the clock cycle "
            f"from t ns to t+1 ns. Registers hold two's-complement codes of the formats: {formats}")


def _root(vf) -> str:
    return vf.network.name if vf.network is not None else "refmodel"


def select(vf, layers=None, signals=None, samples=None):
    """``([(layer, signal)], [sample])`` of a vector file for the names given (None: every
    layer with traces, every signal, every sample); WaveError for a name or sample it lacks."""
    if not any(la.signals for la in vf.layers):
        raise WaveError(f"{vf.path}: the file records no trace (written with --record none?)")
    chosen = [la for la in vf.layers if la.signals] if layers is None else [vf.layer(name) for name in layers]
    for la in chosen:
        if not la.signals:
            raise WaveError(f"layer {la.name!r} has no recorded trace (layers with traces: "
                            f"{', '.join(la.name for la in vf.layers if la.signals)})")
    present = {s for la in chosen for s in la.signals}
    for name in signals or ():
        if name not in present:
            raise WaveError(f"no layer chosen records a signal {name!r} (they record {', '.join(sorted(present))})")
    traces = [(la.name, s) for la in chosen for s in la.signals if signals is None or s in signals]
    if not traces:
        raise WaveError("no trace chosen")
    samples = list(range(vf.batch)) if samples is None else list(samples)
    for n in samples:
        if not 0 <= n < vf.batch:
            raise WaveError(f"sample {n} is not in the file (batch {vf.batch}: samples 0..{vf.batch - 1})")
    if not samples:
        raise WaveError("no sample chosen")
    return traces, samples


def _check_size(out, count: int, max_signals: int, hint: str) -> None:
    if count > max_signals:
        raise WaveError(f"{out}: not written: it would hold {count} signals, more than --max-signals {max_signals}; "
                        f"{hint}")


def export_vcd(path, out, *, layers=None, signals=None, samples=None, max_signals: int = MAX_SIGNALS,
               force: bool = False) -> tuple[int, int]:
    """Write the traces of the vector file ``path`` as the VCD file ``out`` (see the module
    docstring): ``(signals written, timesteps)``.  ``layers``, ``signals``, ``samples`` choose
    (default: all); more than ``max_signals`` element signals is refused before anything is read."""
    from refmodel.vectors import VectorFile

    with VectorFile(path) as vf:
        traces, samples = select(vf, layers, signals, samples)
        count = sum(len(samples) * int(np.prod(vf.trace_info(*t).shape[2:])) for t in traces)
        _check_size(out, count, max_signals, "choose fewer with --layers, --signals, --samples, or raise --max-signals")
        root, several = _root(vf), len(samples) > 1
        probes = []
        for layer, signal in traces:
            info = vf.trace_info(layer, signal)
            values = np.stack([step[samples] for step in vf.trace_steps(layer, signal)]).astype(np.int64)
            names = element_names(info.axes[2:], info.shape[2:])
            for k, n in enumerate(samples):
                scope = (root, layer) + ((f"n{n}",) if several else ()) + (signal,)
                probes.append(Probe(scope, names, info.fmt, values[:, k].reshape(vf.timesteps, -1)))
        write_vcd(out, root, probes, comment=_formats_comment(vf, traces), force=force)
        return count, vf.timesteps


def export_mismatch_vcd(golden, other, first, out, *, window: int = WINDOW, max_signals: int = MAX_SIGNALS,
                        force: bool = False) -> str:
    """Write, as the VCD file ``out``, both files' values of the signals of the layer of
    ``first`` (a trace value Mismatch of ``compare_files``) in its sample, over the timesteps
    ``window`` before to ``window`` after it, under the scopes ``check.golden`` and
    ``check.other``, with ``check.mismatch`` = 1 at each timestep where they differ.  When the
    layer's signals would be more than ``max_signals``, only the elements of the mismatch's
    channel (its first element axis) are shown.  Returns a one-line description."""
    from refmodel.vectors import VectorFile

    if first is None or first.kind != "value" or not first.path.startswith("traces/"):
        raise WaveError(f"{out}: not written: no trace value differs")
    with VectorFile(golden) as a, VectorFile(other) as b:
        la = a.layer(first.layer)
        t0, n = first.index[0], first.index[1]
        lo, hi = max(0, t0 - window), min(a.timesteps, t0 + window + 1)
        infos = [a.trace_info(la.name, s) for s in la.signals]
        part = (slice(None),)
        if 2 * sum(int(np.prod(i.shape[2:])) for i in infos) > max_signals:
            part = (first.index[2],)  # the mismatch's channel
        count, probes, marker = 0, [], np.zeros(hi - lo, dtype=np.int64)
        for info in infos:
            every = np.array(element_names(info.axes[2:], info.shape[2:]), dtype=object).reshape(info.shape[2:])
            names = tuple(np.asarray(every[part]).ravel())
            values = {}
            for side, vf in (("golden", a), ("other", b)):
                values[side] = np.stack([vf.read(info.path, t)[n][part].reshape(-1) for t in range(lo, hi)]) \
                    .astype(np.int64)
                probes.append(Probe(("check", side, la.name, f"n{n}", info.name), names, info.fmt, values[side]))
            marker |= np.any(values["golden"] != values["other"], axis=1)
            count += 2 * len(names)
        _check_size(out, count, max_signals, "raise --max-signals")
        comment = (f"refmodel check: golden {a.config_sha256}, other {b.config_sha256}; first mismatch: {first}. "
                   + _formats_comment(a, [(la.name, s) for s in la.signals]))
        write_vcd(out, "check", probes, start=lo, comment=comment, marker=marker, force=force)
    return f"layer {la.name}, sample {n}, timesteps {lo}..{hi - 1}, {count} signals"
