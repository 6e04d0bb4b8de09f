"""The example RTL as a DUT command for ``refmodel sweep --check-cmd`` (docs/rtl-flow.md §4):

    python examples/rtl/dut.py VECTORS OUT [--build DIR] [--broken]

exports VECTORS' header and hex files (run.py's ``prepare``), runs the plain Verilog testbench of
each block (if1, pool1) under Icarus in dump mode (``+dump=DIR``: the testbench writes every
output it would compare, tb/replay.vh), and writes OUT atomically: a copy of VECTORS whose traces
of those outputs hold the RTL's values, resealed, for ``refmodel check VECTORS OUT``.

Exit status 0 when the simulations ran, whatever the values; 2 with one line on stderr when they
could not (no simulator, a build or run error, an incomplete dump), and OUT is not written.
``--broken`` compiles the RTL with ``BUG_NO_SATURATION`` (rtl/if_neuron_array.v): the IF
neurons' Vm wraps where it should saturate.  The build directory is a temporary one unless
``--build`` names one.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from refmodel.errors import RefmodelError
from refmodel.files import AtomicOutput
from refmodel.testing import unpack_bits
from refmodel.vectors import VectorFile, reseal
from run import BLOCKS, prepare, run_verilog, simulator_missing  # examples/rtl/run.py, beside this file

#: block -> the outputs its testbench dumps (to DIR/<block>.<signal>.txt)
SIGNALS = {"if1": ("v_pre", "spikes", "v_post"), "pool1": ("spikes", "index")}
BUG = "BUG_NO_SATURATION"


class DutError(Exception):
    """The simulation gave no complete set of DUT values."""


def read_dump(path: Path, shape: tuple, bits: int, signed: bool) -> np.ndarray:
    """The values of a dump file (lines ``t n BUS``, one per timestep and sample) as a trace of
    ``shape`` (T, N, ...)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DutError(f"{path.name}: {exc.strerror}") from None
    values, seen = np.zeros(shape, dtype=np.int64), np.zeros(shape[:2], dtype=bool)
    count = int(np.prod(shape[2:]))
    for number, line in enumerate(lines, 1):
        try:
            t, n, bus = line.split()
            values[int(t), int(n)] = unpack_bits(int(bus, 16), count, bits, signed).reshape(shape[2:])
        except (ValueError, IndexError):
            raise DutError(f"{path.name}, line {number}: not 't n HEX' of this trace (an x or z output?)") from None
        seen[int(t), int(n)] = True
    if len(lines) != seen.size or not seen.all():
        raise DutError(f"{path.name}: {len(lines)} lines for {seen.size} timesteps x samples")
    return values


def failure_line(report: str) -> str:
    """The line that says why a testbench did not run: a compiler's first message, else the
    simulation's last line."""
    lines = report.splitlines()
    if lines[:1] == ["iverilog failed:"]:
        return " ".join(lines[:2])
    return lines[-1] if lines else "no output"


def run_dut(vectors: Path, out: Path, build: Path, broken: bool) -> None:
    """Simulate both blocks on ``vectors`` in ``build`` and write ``out`` (see the module docstring)."""
    with AtomicOutput(out) as target:  # refuses a bad OUT before the simulation
        prepare(vectors, build)
        dump = build / "dump"
        shutil.rmtree(dump, ignore_errors=True)  # no file of an earlier run in --build DIR
        dump.mkdir()
        for block in BLOCKS:
            ran, report = run_verilog(block, vectors, build, dump=dump, defines=(BUG,) if broken else ())
            if not ran:
                raise DutError(f"tb_{block} did not run: {failure_line(report)}")
        shutil.copyfile(vectors, target.tmp)
        with VectorFile(vectors) as vf, h5py.File(target.tmp, "r+") as h5:
            for block, signals in SIGNALS.items():
                for name in signals:
                    info = vf.trace_info(block, name)
                    h5[info.path][...] = read_dump(dump / f"{block}.{name}.txt", info.shape, info.fmt.bits,
                                                   info.fmt.signed)
        reseal(target.tmp)  # the RTL's values replace the golden ones on purpose


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vectors", type=Path, help="the golden vector file")
    parser.add_argument("out", type=Path, help="the vector file to write with the RTL's values")
    parser.add_argument("--build", type=Path, help="build directory (default: a temporary one, removed)")
    parser.add_argument("--broken", action="store_true", help=f"compile the RTL with the deliberate bug {BUG}")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: no OUT, no temporary directory left
    try:
        missing = simulator_missing()
        if missing:
            raise DutError(missing)
        if args.build is not None:
            run_dut(args.vectors.resolve(), args.out, args.build.resolve(), args.broken)
        else:
            with tempfile.TemporaryDirectory(prefix="refmodel-dut-") as build:
                run_dut(args.vectors.resolve(), args.out, Path(build), args.broken)
    except (DutError, RefmodelError, OSError) as exc:
        print(f"dut.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
