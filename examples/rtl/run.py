"""The RTL flow end to end (docs/rtl-flow.md): for each network spec, generate refmodel's vectors,
export the parameters (export-sv) and the $readmemh files (export-hex), then run the plain
Verilog testbench and the cocotb testbench of each block under Icarus Verilog.

    python examples/rtl/run.py                  # both example specs, into ./rtl-build
    python examples/rtl/run.py --build DIR SPEC ...
    python examples/rtl/run.py --vectors FILE   # replay an existing vector file instead

Prints one PASS/FAIL line per testbench (a FAIL with refmodel's first-mismatch report) and
exits 0 when every testbench passed, 1 when one failed.  Needs iverilog/vvp on PATH and cocotb.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from refmodel.generate import generate
from refmodel.spec import load_spec
from refmodel.vectors import VectorFile, VectorFileError, export_hex, export_sv

HERE = Path(__file__).resolve().parent
SPECS = (HERE.parents[1] / "vectors" / "recipes" / "conv_if_vmpool.toml", HERE / "if_wrap.toml")
#: block -> (RTL top, its sources)
BLOCKS = {
    "if1": ("if1_top", ("rtl/if1_top.v", "rtl/if_neuron_array.v")),
    "pool1": ("pool1_top", ("rtl/pool1_top.v", "rtl/vm_maxpool2x2.v", "rtl/vm_maxpool2x2_unit.v")),
}
HEADER = "refmodel_params.vh"


def prepare(vectors: Path, out: Path) -> None:
    """``out/refmodel_params.vh`` and ``out/hex/`` of the vector file ``vectors``."""
    out.mkdir(parents=True, exist_ok=True)
    export_sv(vectors, out / HEADER)
    shutil.rmtree(out / "hex", ignore_errors=True)  # export-hex writes a new directory only
    export_hex(vectors, out / "hex")


def simulator_missing() -> str | None:
    """The error to report when iverilog or vvp is not on PATH, else None."""
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: install Icarus Verilog (Debian: apt-get install iverilog)"
    return None


def run_verilog(block: str, vectors: Path, out: Path, *, dump: Path | None = None,
                defines: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Compile (with the Verilog macros ``defines``) and run ``tb/tb_<block>.v`` against ``out``'s
    header and hex files: (passed, report).  With ``dump`` the testbench writes the DUT's outputs
    into that directory instead of comparing them (tb/replay.vh), and passes when it ran to the end."""
    with VectorFile(vectors) as vf:
        sha = vf.config_sha256
    sim = out / f"tb_{block}.vvp"
    sources = [HERE / "tb" / f"tb_{block}.v"] + [HERE / s for s in BLOCKS[block][1]]
    includes = ["-I", str(out), "-I", str(HERE / "tb")]  # refmodel_params.vh, replay.vh
    build = subprocess.run(["iverilog", "-g2005", "-Wall", *includes, *(f"-D{d}" for d in defines), "-o", str(sim),
                            *map(str, sources)], capture_output=True, text=True)
    if build.returncode:
        return False, f"iverilog failed:\n{build.stdout}{build.stderr}"
    plusargs = [f"+hex={out / 'hex'}", f"+config_sha256={sha}"] + ([f"+dump={dump}"] if dump else [])
    run = subprocess.run(["vvp", "-n", str(sim), *plusargs], capture_output=True, text=True)
    text = (run.stdout + run.stderr).strip()
    # vvp exits 0 after a runtime error, so a pass needs the testbench's own last line too
    return run.returncode == 0 and f"tb_{block}: {'DUMPED' if dump else 'PASS'}" in text, text


def run_cocotb(block: str, vectors: Path, out: Path) -> tuple[bool, str]:
    """Build ``<block>_top`` and run ``cocotb/test_<block>.py`` on ``vectors``: (passed, report)."""
    from cocotb_tools.runner import get_runner

    top, sources = BLOCKS[block]
    build_dir = out / f"cocotb_{block}"
    log = build_dir / "sim.log"
    runner = get_runner("icarus")
    runner.build(sources=[HERE / s for s in sources], includes=[out], hdl_toplevel=top, build_dir=build_dir,
                 always=True, log_file=build_dir / "build.log")
    if str(HERE / "cocotb") not in sys.path:
        sys.path.insert(0, str(HERE / "cocotb"))  # the runner gives the simulator's Python this sys.path
    results = runner.test(test_module=f"test_{block}", hdl_toplevel=top, build_dir=build_dir, log_file=log,
                          extra_env={"REFMODEL_VECTORS": str(vectors)})
    if not results.is_file():
        return False, f"the simulation ended without results (log: {log})"
    cases = ElementTree.parse(results).getroot().findall(".//testcase")
    failures = [f.get("message", "") for case in cases for f in case.findall("failure") + case.findall("error")]
    if not cases or failures:
        return False, "\n".join(failures) or f"no test ran (log: {log})"
    return True, f"{len(cases)} cocotb test(s) passed (log: {log})"


def replay(vectors: Path, out: Path) -> bool:
    """Run every testbench on ``vectors``; print a line each; True when all passed."""
    prepare(vectors, out)
    passed = True
    for block in BLOCKS:
        for bench, run in (("verilog", run_verilog), ("cocotb", run_cocotb)):
            ok, report = run(block, vectors, out)
            passed &= ok
            print(f"{'PASS' if ok else 'FAIL'} {bench} {block} [{out.name}]: {report.splitlines()[-1] if ok else report}")
    return passed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", type=Path, help="network specs (default: the two example specs)")
    parser.add_argument("--build", type=Path, default=Path("rtl-build"), help="output directory (default ./rtl-build)")
    parser.add_argument("--vectors", type=Path, help="replay this vector file instead of generating from specs")
    args = parser.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(f"run.py: {missing}", file=sys.stderr)
        return 2
    # the cocotb runner exits the process on a failure when it believes it runs inside pytest
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        if args.vectors is not None:
            return 0 if replay(args.vectors.resolve(), args.build.resolve() / args.vectors.stem) else 1
        passed = True
        for spec_path in args.specs or SPECS:
            spec = load_spec(spec_path)
            out = args.build.resolve() / spec.network.name
            out.mkdir(parents=True, exist_ok=True)
            generate(spec, out / "vectors.h5")
            passed &= replay(out / "vectors.h5", out)
        return 0 if passed else 1
    except (VectorFileError, ValueError) as exc:  # a bad spec or vector file (SpecError is a ValueError)
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
