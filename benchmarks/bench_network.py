"""Speed of whole-network simulation, bit-exact integers against a float32 torch loop, in one run.

Two networks at batch 16, weights random 8-bit integers (seeded), analog 8-bit input:

* ``vgg``: 3×32×32 → conv 64, 64, Vm max-pool, 128, 128, pool, 256, 256, pool (3×3, pad 1,
  IF ``>=``, reset by subtraction, 24-bit saturating Vm; pools: ``WinnerSpikePool``, winner
  by post-reset Vm) → flatten → FC 512 (IF) → FC 10 readout (IF, no reset), T = 16.
* ``dtscnn``: the DT-SCNN CIFAR-10 network of mission.md: DT conv 48, 128, avgpool, 192,
  avgpool, 192, 128, avgpool (``DualThreshold``, ``>``, leak ×0.5, reset to zero when s1 or
  s2 fires; ``AvgPool`` 2×2 keeping the exact mean, codes 0..4 /4) → FC 4096→1024→1024
  (LIF, same leak and reset) → 10 readout (IF, no reset), T = 1 (the paper's operating point).

Thresholds (``THRESHOLDS``) were chosen so that every spiking layer fires about 10% of the
time (DT: s1 ~15%, s2 ~5%); the measured rates are printed.  Per network, in interleaved
rounds (median over rounds; ratios taken within a round):

* ``refmodel``: ``Network.run(x, T)`` without traces (best of ``--reps`` runs per round);
* ``refmodel + vectors (R)``: ``refmodel.generate.generate`` with ``record=R`` streamed into an
  HDF5 vector file (the main job): ``"all"`` (every trace of every layer), ``"spikes"`` (the
  spikes of every layer) and ``"none"`` (parameters, stimulus, outputs, counts, cost and
  coverage only), with ``--compression`` (default ``fast``); its time over the plain
  simulation's is set against issue 17's targets (``TARGETS``);
* ``torch f32``: the same layers, weights and thresholds as a float32 torch loop
  (``torch.no_grad``, the first layer's constant current computed once, as refmodel does),
  when torch is importable (best of ``--reps``); its readout Vm is checked equal to refmodel's.

Wall time and the process' CPU time (all threads) are both reported: the machine is shared,
and CPU time is less sensitive to other processes.  Then a profile of the least disturbed of 3 runs (1 recorded run), by timers around each
layer's ``forward``/``step`` and around the kernels and helpers they call.

    python benchmarks/bench_network.py [--quick] [--rounds 3] [--reps 3] [--threads 2] [--compression fast]

``--quick``: one round, best of 2 (under a minute once numba's cache is warm).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402

import refmodel.kernels._conv_kernels as conv_kernels  # noqa: E402
import refmodel.kernels._conv_simd as conv_simd  # noqa: E402
import refmodel.kernels.conv as conv_mod  # noqa: E402
import refmodel.kernels.neurons as neuron_kernels  # noqa: E402
import refmodel.kernels.pooling as pool_kernels  # noqa: E402
from refmodel.fixed import QFormat  # noqa: E402
from refmodel.generate import generate  # noqa: E402
from refmodel.layers import (  # noqa: E402
    IF, LIF, AvgPool, Conv2d, DualThreshold, Flatten, Linear, WinnerSpikePool,
)
from refmodel.network import Network  # noqa: E402
from refmodel.spec import Spec, StimulusSpec  # noqa: E402
from refmodel.vectors.chunks import compression  # noqa: E402
from refmodel.vectors.writer import VectorWriter  # noqa: E402

BATCH = 16
PIXEL = QFormat(8, signed=False)
W8 = QFormat(8)
VM = QFormat(24)  # saturating membrane potential
HALF = {"leak": "mul", "leak_mult": 1, "leak_shift": 1}  # V <- floor(V / 2), the DT-SCNN leak
MEAN4 = QFormat(3, 2, signed=False)  # the exact mean of a 2×2 window of spikes: codes 0..4, /4
THRESHOLDS = {
    "vgg": {"if1": 192317, "if2": 794, "if3": 1535, "if4": 1376, "if5": 1354, "if6": 1852, "if7": 1971},
    "dtscnn": {
        "dt1": (64365, 98544), "dt2": (598, 1017), "dt3": (2761, 4697), "dt4": (3282, 5727),
        "dt5": (1076, 1909), "lif1": 4459, "lif2": 939,
    },
}  # fmt: skip


# --------------------------------------------------------------------------- networks
def _conv(rng, name, cin, cout):
    return Conv2d(name, rng.integers(-128, 128, (cout, cin, 3, 3)), W8, padding=1)


def _linear(rng, name, fin, fout):
    return Linear(name, rng.integers(-128, 128, (fout, fin)), W8)


def _readout():
    return IF(name="readout", vm=VM, overflow="SAT", threshold=VM.max_int, reset="none")


def vgg(seed=1):
    thr, rng, layers, cin = THRESHOLDS["vgg"], np.random.default_rng(seed), [], 3
    for i, (cout, pool) in enumerate(((64, 0), (64, 1), (128, 0), (128, 1), (256, 0), (256, 1)), 1):
        layers += [_conv(rng, f"conv{i}", cin, cout), IF(name=f"if{i}", vm=VM, overflow="SAT", threshold=thr[f"if{i}"])]
        if pool:
            layers.append(WinnerSpikePool(name=f"pool{i}", kernel=2, vm_stage="post"))
        cin = cout
    layers += [
        Flatten("flat"), _linear(rng, "fc1", 4096, 512), IF(name="if7", vm=VM, overflow="SAT", threshold=thr["if7"]),
        _linear(rng, "fc2", 512, 10), _readout(),
    ]  # fmt: skip
    return Network(layers, (3, 32, 32), PIXEL, name="vgg")


def dtscnn(seed=2):
    thr, rng, layers, cin = THRESHOLDS["dtscnn"], np.random.default_rng(seed), [], 3
    for i, (cout, pool) in enumerate(((48, 0), (128, 1), (192, 1), (192, 0), (128, 1)), 1):
        t1, t2 = thr[f"dt{i}"]
        layers += [
            _conv(rng, f"conv{i}", cin, cout),
            DualThreshold(name=f"dt{i}", vm=VM, overflow="SAT", theta1=t1, theta2=t2, compare=">", reset="zero",
                          reset_by="either", **HALF),
        ]  # fmt: skip
        if pool:
            layers.append(AvgPool(name=f"avg{i}", kernel=2, out_format=MEAN4, rounding="TRN"))
        cin = 2 * cout
    layers.append(Flatten("flat"))
    for i, (fin, fout) in enumerate(((4096, 1024), (1024, 1024)), 1):
        layers += [
            _linear(rng, f"fc{i}", fin, fout),
            LIF(name=f"lif{i}", vm=VM, overflow="SAT", threshold=thr[f"lif{i}"], compare=">", reset="zero", **HALF),
        ]  # fmt: skip
    layers += [_linear(rng, "fc3", 1024, 10), _readout()]
    return Network(layers, (3, 32, 32), PIXEL, name="dtscnn")


NETWORKS = {"vgg": (vgg, 16), "dtscnn": (dtscnn, 1)}
#: Issue 17: generate(record=R) at most this many times the plain simulation.
TARGETS = {"vgg": {"all": 3.0, "spikes": 1.6, "none": 1.3}, "dtscnn": {"none": 1.5}}


def stimulus(seed=7):
    return np.random.default_rng(seed).integers(0, 256, (BATCH, 3, 32, 32))


# --------------------------------------------------------------------------- synaptic ops
def _synapse_sources(network):
    """{synaptic layer name: name of the layer whose output it reads (None: the stimulus)}."""
    sources, last = {}, None
    for layer in network.layers:
        if layer.role == "synapse":
            sources[layer.name] = last
        if layer.role != "shape":
            last = layer.name
    return sources


def _reach(layer, shape_in):
    """(H, W) map: how many output pixels each input pixel reaches (1 for a linear layer)."""
    if layer.kind == "linear":
        return np.ones(1)
    _, h, w = shape_in
    _, _, kh, kw = layer.weight.shape
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def count(n, k, s, p, out):
        return np.array([sum(0 <= i + p - o * s < k for o in range(out)) for i in range(n)])

    return np.outer(count(h, kh, sh, ph, ho), count(w, kw, sw, pw, wo))


def synaptic_ops(network, x, timesteps):
    """(ops, dense MACs) per run: ops = Σ over synaptic layers and timesteps of (nonzero inputs
    × the weights each one reaches), what an event-driven datapath does; the analog first
    layer counts all its MACs (padding taps included) every timestep, although refmodel and
    the torch loop compute its constant current once.  Dense MACs: every output × its fan-in."""
    sources = _synapse_sources(network)
    shapes = {layer.name: shape for layer, shape in zip(network.layers, network.shapes)}
    reach = {}
    for layer in network.layers:
        if layer.name in sources:
            shape_in, shape_out = shapes[layer.name]
            fan = layer.weight.shape[0] // getattr(layer, "groups", 1)
            reach[sources[layer.name]] = (fan * _reach(layer, shape_in), int(np.prod(shape_out)) * layer.weight[0].size)
    ops = {"n": 0}

    def sink(name, signal, t, value):
        nonzero = (value != 0).reshape(value.shape[0], -1, *reach[name][0].shape)
        ops["n"] += int((nonzero.sum(axis=(0, 1)) * reach[name][0]).sum())

    recorded = [(src, "spikes") for src in sources.values() if src is not None]
    network.run(x, timesteps, record=recorded, sink=sink)
    dense = x.shape[0] * timesteps * sum(macs for _, macs in reach.values())
    ops["n"] += x.shape[0] * timesteps * reach[None][1]
    return ops["n"], dense


# --------------------------------------------------------------------------- torch loop
def torch_loop(network):
    """A float32 torch function ``f(x, T) -> readout Vm`` running ``network``'s layers, for the
    options the two networks here use: IF ``>=`` with reset by subtraction (or none, the
    readout); LIF and DT ``>`` with leak ×0.5 (floor) and reset to zero; no saturation (the
    script checks the readout Vm against refmodel's and reports refmodel's saturations)."""
    import torch
    import torch.nn.functional as F

    def f32(a):
        return torch.from_numpy(np.asarray(a, np.float32))

    translate = {  # each kind's torch twin: what the loop below needs of the layer
        "conv2d": lambda la: ("conv", f32(la.weight), la.padding),
        "linear": lambda la: ("linear", f32(la.weight)),
        "dual_threshold": lambda la: ("dt", float(la.theta1), float(la.theta2)),
        "lif": lambda la: ("lif", float(la.threshold)),
        "if": lambda la: ("if", float(la.threshold), la.reset),
        "winner_spike": lambda la: ("vmpool", la.kernel),
        "avg": lambda la: ("sumpool", la.kernel),
        "flatten": lambda la: ("flatten",),
    }
    missing = [layer.kind for layer in network.layers if layer.kind not in translate]
    if missing:
        raise TypeError(f"no torch twin for {missing[0]}")
    steps = [translate[layer.kind](layer) for layer in network.layers]

    @torch.no_grad()
    def run(x, timesteps):
        x = torch.from_numpy(x.astype(np.float32))
        v = [None] * len(steps)
        first = None
        for _ in range(timesteps):
            h = x
            for i, step in enumerate(steps):
                kind = step[0]
                if kind == "conv" and i == 0:
                    first = F.conv2d(h, step[1], padding=step[2]) if first is None else first
                    h = first
                elif kind == "conv":
                    h = F.conv2d(h, step[1], padding=step[2])
                elif kind == "linear":
                    h = F.linear(h, step[1])
                elif kind == "if":
                    v[i] = h if v[i] is None else v[i] + h
                    if step[2] == "subtract":
                        h = (v[i] >= step[1]).to(torch.float32)
                        v[i] = v[i] - step[1] * h
                elif kind in ("dt", "lif"):
                    v[i] = h if v[i] is None else torch.floor(v[i] * 0.5) + h
                    s = [(v[i] > theta) for theta in step[1:]]
                    fired = s[0] if len(s) == 1 else s[0] | s[1]
                    v[i] = v[i].masked_fill(fired, 0.0)
                    h = torch.cat(s, 1).to(torch.float32)
                elif kind == "vmpool":  # winner = first max of the post-reset Vm, as refmodel
                    _, idx = F.max_pool2d(v[i - 1], step[1], return_indices=True)
                    h = h.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
                elif kind == "sumpool":  # the window sum = the exact mean's code (frac 2)
                    h = F.avg_pool2d(h, step[1], divisor_override=1)
                else:
                    h = h.flatten(1)
        return v[-1]

    return run


# --------------------------------------------------------------------------- timing
def timed(f):
    """(wall seconds, CPU seconds of this process, all threads; f's result)."""
    t, c = time.perf_counter(), time.process_time()
    out = f()
    return time.perf_counter() - t, time.process_time() - c, out


RECORDS = ("all", "spikes", "none")


def record_run(network, x, timesteps, directory, record="all", compression="fast"):
    """The main job: the ``record`` traces streamed into a vector file; (Result, file size)."""
    spec = Spec(network, StimulusSpec(source="x", batch=x.shape[0], timesteps=timesteps, seed=0), {"x": x})
    path = Path(directory) / f"{network.name}.h5"
    result = generate(spec, path, record=record, compression=compression)
    size = path.stat().st_size
    path.unlink()
    return result, size


def measure(name, rounds, reps, threads, directory, compression="fast"):
    build, timesteps = NETWORKS[name]
    network, x = build(), stimulus()
    reference = network.run(x, timesteps)  # compiles / warms every kernel
    cases = {
        "refmodel": lambda: network.run(x, timesteps),
        **{f"refmodel + vectors ({r})": lambda r=r: record_run(network, x, timesteps, directory, r, compression)
           for r in RECORDS},
    }
    checks = {}
    try:
        import torch

        torch.set_num_threads(threads)
        loop = torch_loop(network)
        v = loop(x, timesteps).numpy()
        checks["torch readout Vm == refmodel"] = bool(np.array_equal(v, reference.outputs["v"]))
        cases["torch f32"] = lambda: loop(x, timesteps)
    except ImportError:
        pass
    times = {case: [] for case in cases}
    cpu = {case: [] for case in cases}
    file_size = {}
    for _ in range(rounds):
        for case, f in cases.items():
            recorded = case.startswith("refmodel + vectors")
            runs = [timed(f) for _ in range(1 if recorded else reps)]
            t, c, out = min(runs, key=lambda run: run[0])
            times[case].append(t)
            cpu[case].append(c)
            if recorded:
                result, file_size[case] = out
                checks[f"{case} == plain run"] = bool(np.array_equal(result.outputs["v"], reference.outputs["v"]))
    ops, dense = synaptic_ops(network, x, timesteps)
    rates = {layer: reference.spike_rate(layer) for layer in reference.spike_counts}
    return {
        "network": network, "x": x, "timesteps": timesteps, "times": times, "cpu": cpu, "ops": ops, "dense": dense,
        "rates": rates, "checks": checks, "file_size": file_size, "saturated": int(reference.overflows.sum()),
    }  # fmt: skip


def within(times, a, b):
    """Median over rounds of times[b] / times[a]: how many times faster a ran than b."""
    return statistics.median(tb / ta for ta, tb in zip(times[a], times[b]))


# --------------------------------------------------------------------------- profile
class Timers:
    """Accumulated seconds per label; ``wrap`` times a callable under a label chosen at call time."""

    def __init__(self):
        self.seconds, self.calls, self.kind = {}, {}, "?"

    def add(self, label, dt):
        self.seconds[label] = self.seconds.get(label, 0.0) + dt
        self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, f, label, set_kind=None):
        @functools.wraps(f)
        def timed_call(*args, **kwargs):
            outer = self.kind
            if set_kind:
                self.kind = set_kind
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                self.add(label.format(kind=self.kind), time.perf_counter() - t)
                self.kind = outer

        return timed_call


# (module, attribute, label): the kernels and helpers timed inside the layers' calls
_INNER = [
    (conv_simd, "dense_simd", "{kind}: dense SIMD kernel"),
    (conv_simd, "event_spikes", "{kind}: event kernel"),
    (conv_kernels, "dense_ordered", "{kind}: dense ordered kernel"),
    (conv_kernels, "event_ordered", "{kind}: event ordered kernel"),
    (conv_mod.Weights, "partial_sum_range", "{kind}: range proof (O(K))"),
    (conv_mod, "_dense_simd", "{kind}: dense SIMD kernel + input layout"),
    (neuron_kernels, "neuron_step", "{kind}: neuron kernel"),
    *((pool_kernels, k, "{kind}: pool kernel") for k in pool_kernels.__all__),
    (VectorWriter, "write_step", "vectors: write_step (traces)"),
    (VectorWriter, "write_param", "vectors: write_param"),
]


@contextlib.contextmanager
def instrumented(network, timers):
    """Time every layer's forward/step and the functions of ``_INNER`` while inside."""
    saved = [(module, attr, getattr(module, attr)) for module, attr, _ in _INNER]
    for module, attr, label in _INNER:
        setattr(module, attr, timers.wrap(getattr(module, attr), label))
    for layer in network.layers:
        # what Network.run calls: forward (synapses), advance (neurons), step (pools)
        method = {"synapse": "forward", "neuron": "advance"}.get(layer.role, "step")
        if hasattr(layer, method):
            kind = layer.kind
            object.__setattr__(layer, method, timers.wrap(getattr(layer, method), f"{kind}: whole call", kind))
    try:
        yield timers
    finally:
        for module, attr, f in saved:
            setattr(module, attr, f)
        for layer in network.layers:
            for method in ("forward", "step", "advance"):
                layer.__dict__.pop(method, None)


def profile(m, directory):
    network, x, timesteps = m["network"], m["x"], m["timesteps"]
    cases = [("refmodel", lambda: network.run(x, timesteps), 3),
             ("refmodel + vectors (all)", lambda: record_run(network, x, timesteps, directory), 1)]  # fmt: skip
    out = {}
    for case, f, reps in cases:

        def one(f=f):
            with instrumented(network, Timers()) as timers:
                total, _, _ = timed(f)
            return total, timers.seconds, timers.calls

        runs = [one() for _ in range(reps)]
        out[case] = min(runs, key=lambda run: run[0])  # the least disturbed run
    return out


def profile_lines(name, prof):
    lines = []
    for case, (total, seconds, calls) in prof.items():
        lines += [f"**{name}, {case}** (one run, {total * 1e3:.0f} ms):", "", "| where | ms | % of run | calls |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        whole = sum(s for label, s in seconds.items() if label.endswith("whole call"))
        writer = sum(s for label, s in seconds.items() if label.startswith("vectors"))
        rows = sorted(seconds.items(), key=lambda kv: (kv[0].split(":")[0], "whole" not in kv[0], -kv[1]))
        for label, s in rows:
            lines.append(f"| {label} | {s * 1e3:.1f} | {100 * s / total:.1f}% | {calls[label]} |")
        rest = total - whole - writer
        lines.append(
            f"| rest: Network.run loop, spike counts, generate() setup | {rest * 1e3:.1f} | {100 * rest / total:.1f}% | |"
        )
        lines.append("")
    return lines


# --------------------------------------------------------------------------- report
def machine():
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    import h5py

    versions = (f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
                f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version})")  # fmt: skip
    with contextlib.suppress(ImportError):
        import torch

        versions += f", torch {torch.__version__}"
    return f"{model}, {os.cpu_count()} cores; {versions}"


def report(results, threads, rounds, reps, load, how):
    lines = [
        f"Machine: {machine()}; {threads} thread(s); load average before/after: {load[0]:.1f}/{load[1]:.1f}; "
        f"vector files: compression {how.describe()!r}.",
        f"Batch {BATCH}; median of {rounds} round(s); per round the best of {reps} run(s) of the cases without "
        "traces and one recorded run; ratios within a round.",
        "",
        "| network | T | case | wall ms per run | CPU ms per run | timesteps/s | GSOP/s | dense-equiv. GMAC/s "
        "| speed vs torch f32 (wall) | (CPU) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in results.items():
        times, cpu, T = m["times"], m["cpu"], m["timesteps"]
        for case, ts in times.items():
            t = statistics.median(ts)
            vs = (f"{within(times, case, 'torch f32'):.2f}× | {within(cpu, case, 'torch f32'):.2f}×"
                  if "torch f32" in times else "– | –")  # fmt: skip
            lines.append(f"| {name} | {T} | {case} | {t * 1e3:.1f} | {statistics.median(cpu[case]) * 1e3:.0f} | "
                         f"{T / t:.1f} | {m['ops'] / t / 1e9:.2f} | {m['dense'] / t / 1e9:.1f} | {vs} |")  # fmt: skip
    lines.append("")
    for name, m in results.items():
        times, cpu, T = m["times"], m["cpu"], m["timesteps"]
        for r in RECORDS:
            case = f"refmodel + vectors ({r})"
            per_round = sorted(b / a for a, b in zip(times["refmodel"], times[case]))
            target = TARGETS[name].get(r)
            met = within(times, "refmodel", case) <= (target or 0)
            verdict = "no target" if target is None else f"target <= {target}×: {'met' if met else 'NOT met'}"
            lines.append(f"- **{name}**, record={r!r}: generate = **{within(times, 'refmodel', case):.2f}×** the plain "
                         f"simulation (wall; rounds {per_round[0]:.2f}–{per_round[-1]:.2f}), "
                         f"{within(cpu, 'refmodel', case):.2f}× in CPU time ({verdict}); vector file "
                         f"{m['file_size'][case] / 1e6:.1f} MB for T = {T}.")  # fmt: skip
        if "torch f32" in times:
            speed = within(times, "refmodel", "torch f32")
            lines.append(f"- **{name}**: refmodel (no traces) vs torch float32: **{speed:.2f}×** (target >= 1.0×)")
        lines.append(f"- {name}: {m['ops'] / 1e6:.0f} M synaptic ops and {m['dense'] / 1e9:.2f} G dense MACs per run; "
                     f"{m['saturated']} saturated Vm writes; checks: "
                     + (", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in m["checks"].items()) or "none"))
        rates = ", ".join(f"{layer} {rate:.1%}" for layer, rate in m["rates"].items() if layer != "readout")
        lines.append(f"- {name} spike rates (spikes per neuron per timestep; pools: output codes): {rates}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round, best of 2 runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="runs per round of the cases without traces (best taken)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compression", choices=("fast", "small", "none"), default="fast",
                    help="the vector files' compression")
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    rounds, reps = (1, 2) if args.quick else (args.rounds, args.reps)
    load0 = os.getloadavg()[0]
    results, profiles = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        for name in NETWORKS:
            results[name] = measure(name, rounds, reps, args.threads, directory, args.compression)
            profiles[name] = profile(results[name], directory)
    load1 = os.getloadavg()[0]
    lines = report(results, args.threads, rounds, reps, (load0, load1), compression(args.compression))
    lines += ["", "Where the time goes (timers around each layer call and the kernels inside; nested rows "
              "are part of their layer's whole call):", ""]  # fmt: skip
    for name, prof in profiles.items():
        lines += profile_lines(name, prof)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
