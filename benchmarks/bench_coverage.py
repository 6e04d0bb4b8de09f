"""What measuring coverage costs the simulation: ``Network.run(x, T)`` against
``Network.run(x, T, coverage=True)``, side by side in one process, on the networks of
``bench_network.py`` (vgg at T = 16, dtscnn at T = 1, batch 16) and on a copy of vgg whose
synaptic layers have a 20-bit saturating accumulator (``vgg_acc20``: where the range proof
lets a partial sum come within 1 LSB of a bound, fc1's, the coverage of its accumulator walks
every partial sum in the ordered kernel).

In interleaved rounds, each case best of ``--reps`` runs; the ratio (coverage / plain) is taken
within a round, and its median over rounds is reported with the wall and CPU times.  The
coverage run's outputs are checked equal to the plain run's.

    python benchmarks/bench_coverage.py [--rounds 5] [--reps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_network import dtscnn, machine, stimulus, timed, vgg  # noqa: E402

from refmodel.fixed import QFormat  # noqa: E402
from refmodel.network import Network  # noqa: E402


def vgg_acc20():
    """vgg with every synaptic layer's accumulator s20, saturating after each addition."""
    net = vgg()
    layers = [dataclasses.replace(layer, acc_format=QFormat(20), overflow="SAT") if layer.role == "synapse" else layer
              for layer in net.layers]
    return Network(layers, net.input_shape, net.input_format, name="vgg_acc20")


NETWORKS = {"vgg": (vgg, 16), "dtscnn": (dtscnn, 1), "vgg_acc20": (vgg_acc20, 16)}


def measure(build, timesteps, rounds, reps):
    network, x = build(), stimulus()
    plain = network.run(x, timesteps)  # warms every kernel
    covered = network.run(x, timesteps, coverage=True)
    same = all(np.array_equal(plain.outputs[k], covered.outputs[k]) for k in plain.outputs)
    cases = {"plain": lambda: network.run(x, timesteps), "coverage": lambda: network.run(x, timesteps, coverage=True)}
    wall = {case: [] for case in cases}
    cpu = {case: [] for case in cases}
    for _ in range(rounds):
        for case, f in cases.items():
            t, c, _ = min((timed(f) for _ in range(reps)), key=lambda run: run[0])
            wall[case].append(t)
            cpu[case].append(c)
    ratio = statistics.median(b / a for a, b in zip(wall["plain"], wall["coverage"]))
    cpu_ratio = statistics.median(b / a for a, b in zip(cpu["plain"], cpu["coverage"]))
    return wall, cpu, ratio, cpu_ratio, same, covered.coverage


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    print(f"machine: {machine()}; {args.threads} numba threads; {args.rounds} rounds, best of {args.reps}")
    print(f"{'network':10} {'T':>3} {'plain s':>8} {'coverage s':>11} {'wall ratio':>11} {'CPU ratio':>10}  outputs equal")
    for name, (build, timesteps) in NETWORKS.items():
        wall, cpu, ratio, cpu_ratio, same, coverage = measure(build, timesteps, args.rounds, args.reps)
        print(f"{name:10} {timesteps:>3} {statistics.median(wall['plain']):8.3f} "
              f"{statistics.median(wall['coverage']):11.3f} {ratio:11.3f} {cpu_ratio:10.3f}  {same}")
        print(f"{'':15}coverage of the run: {coverage.percent():.1f}% of reachable bins hit, "
              f"holes: {', '.join(f'{layer}.{b}' for layer, b in coverage.holes()[:6]) or 'none'}"
              f"{' ...' if len(coverage.holes()) > 6 else ''}")


if __name__ == "__main__":
    main()
