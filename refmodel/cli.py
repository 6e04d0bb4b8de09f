"""The ``refmodel`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

from refmodel.errors import RefmodelError

DESCRIPTION = ("refmodel: a bit-exact fixed-point golden model of spiking-CNN hardware. Run a network spec and "
               "write its HDF5 test vectors (gen), inspect, compare and export them (inspect, check, export-hex; "
               "export-sv for the parameters as a Verilog header, export-vcd for wave viewers), "
               "merge and export their functional coverage "
               "(coverage), sweep seeds and variants on Dask with a DUT in the loop (sweep, sweep-report), "
               "estimate its cost (cost), or run the built-in "
               "example (demo). "
               "Exit status 2 for bad input or an unreadable or unwritable file, 130 when interrupted (Ctrl-C), 141 "
               "when the reader of its output has gone (| head), "
               "143 when terminated (SIGTERM); an interrupted command leaves no file behind.")


def _cmd_demo(args) -> int:
    if args.example == "dtscnn":
        from refmodel.dtscnn_demo import run_dtscnn_demo

        run_dtscnn_demo(out=sys.stdout, outdir=args.out)
        return 0
    from refmodel.demo import run_demo
    from refmodel.progress import progress_bar

    with progress_bar(None, "demo", "step", force=args.progress) as bar:
        run_demo(out=sys.stdout, outdir=args.out, progress=lambda done, total: _advance(bar, done, total))
    return 0


def _advance(bar, done: int, total: int) -> None:
    """Show ``done`` of ``total`` on a progress bar."""
    bar.total = total
    bar.update(done - bar.n)


def _cmd_gen(args) -> int:
    from refmodel.generate import generate
    from refmodel.spec import load_spec, parse_setting

    spec = load_spec(args.spec, [parse_setting(text) for text in args.set])
    record = _record(args.record)
    if args.cover is not None:
        return _gen_covered(args, spec, record)
    if args.budget is not None:
        raise _UsageError("--budget is the number of runs of --cover; give --cover BINS too")
    if args.scale:
        raise _UsageError("--scale draws the source ranges of --cover; give --cover BINS too")
    from refmodel.progress import progress_bar

    timesteps = spec.stimulus.timesteps if args.timesteps is None else args.timesteps
    with progress_bar(timesteps, spec.network.name, "step", force=args.progress) as bar:
        result = generate(spec, args.out, timesteps=args.timesteps, batch=args.batch, seed=args.seed,
                          range=args.range and tuple(args.range), record=record, progress=lambda t: bar.update(1),
                          force=args.force, coverage=not args.no_coverage, compression=args.compression)
    rates = ", ".join(f"{name} {result.spike_rate(name):.4f}" for name in result.spike_counts)
    print(f"wrote {args.out}: {result.timesteps} timesteps, batch {result.batch}; spike rates: {rates}; "
          f"overflows: {int(result.overflows.sum())}")
    return 0


def _record(items):
    """The ``record`` argument of ``generate`` for ``--record`` items."""
    return "all" if items == ["all"] else (None if items == ["none"] else items)


def _gen_covered(args, spec, record) -> int:
    """``gen --cover``: coverage-directed generation into the directory ``--out`` (docs/coverage.md §7)."""
    import dataclasses

    from refmodel.directed import directed
    from refmodel.generate import overridden
    from refmodel.progress import progress_bar

    if args.no_coverage:
        raise _UsageError("--cover measures coverage: it cannot be combined with --no-coverage")
    if args.scale and args.range:
        raise _UsageError("--scale draws the source range of each run: it cannot be combined with --range")
    spec = dataclasses.replace(spec, stimulus=overridden(spec, timesteps=args.timesteps, batch=args.batch,
                                                         seed=args.seed, range=args.range and tuple(args.range)))
    names = "all" if args.cover.strip() == "all" else [n.strip() for n in args.cover.split(",") if n.strip()]
    budget = 100 if args.budget is None else args.budget

    def progress(runs, hit, wanted):
        bar.set_postfix_str(f"{hit}/{wanted} bins hit", refresh=False)
        _advance(bar, runs, runs if hit == wanted else budget)

    with progress_bar(budget, f"{spec.network.name} --cover", "run", force=args.progress) as bar:
        done = directed(spec, args.out, names, budget=budget, scale=args.scale, record=record, progress=progress)
    wanted = len(done.hit) + len(done.unhit)
    chosen = ", ".join(f"{seed} range {lo}..{hi}" for seed, (lo, hi) in zip(done.seeds, done.ranges)) \
        if args.scale else ", ".join(map(str, done.seeds))
    print(f"{done.runs} run{'s' if done.runs != 1 else ''} (seeds {spec.stimulus.seed}..), {len(done.hit)} of "
          f"{wanted} reachable bins hit; wrote {len(done.files)} file{'s' if len(done.files) != 1 else ''} "
          f"(seeds {chosen}): {', '.join(done.files)}")
    for (layer, name), why in done.unreachable.items():
        print(f"  unreachable: {layer}.{name} ({why})")
    if done.unhit:
        unhit = ", ".join(f"{layer}.{name}" for layer, name in done.unhit)
        print(f"not hit within the budget of {budget} runs: {unhit}")
        return 1
    return 0


def _cmd_inspect(args) -> int:
    from refmodel.vectors import VectorFile
    from refmodel.vectors.summary import summarize

    with VectorFile(args.file) as vf:
        vf.verify()
        print(summarize(vf))
    return 0


def _cmd_check(args) -> int:
    from refmodel.vectors import compare_files

    result = compare_files(args.golden, args.other)
    print(result.report())
    if args.vcd:
        from refmodel.waves import export_mismatch_vcd

        first = next((d for d in result.differences if d.kind == "value" and d.path.startswith("traces/")), None)
        if first is None:
            print(f"{args.vcd}: not written: no trace value differs")
        else:
            what = export_mismatch_vcd(args.golden, args.other, first, args.vcd, window=args.window,
                                       max_signals=args.max_signals, force=args.force)
            print(f"wrote {args.vcd}: {what} of both files around the first mismatch")
    return 0 if result.equal else 1


def _cmd_export_vcd(args) -> int:
    from refmodel.waves import export_vcd

    def names(text):
        return None if text is None else [name.strip() for name in text.split(",") if name.strip()]

    samples = names(args.samples)
    try:
        samples = None if samples is None else [int(n) for n in samples]
    except ValueError:
        raise _UsageError(f"--samples {args.samples}: give sample numbers, e.g. 0,1") from None
    count, timesteps = export_vcd(args.file, args.out, layers=names(args.layers), signals=names(args.signals),
                                  samples=samples, max_signals=args.max_signals, force=args.force)
    print(f"wrote {args.out}: {count} signals over {timesteps} timesteps (timestep t at t ns)")
    return 0


def _cmd_coverage(args) -> int:
    from refmodel import coverage_report as report

    report.need(*[export for export in ("ucis", "yaml") if getattr(args, export)])
    groups = report.by_network(args.files)
    if len(groups) > 1 and (args.ucis or args.yaml or args.html):
        raise _UsageError(f"the files hold {len(groups)} networks; --ucis, --yaml and --html export the coverage of "
                          "one network: give the files of one network")
    status = 0
    for files in groups:
        merged, config = report.read_coverage(files)
        holes = report.unmet(merged, args.require) if args.require else []
        name = config["network"]["name"]
        if len(groups) > 1:
            print(f"== network {name}: {len(files)} file{'s' if len(files) != 1 else ''}")
        print(merged.table(args.per_channel))
        if args.ucis:
            from refmodel.vectors import VectorFile

            runs = []
            for path in files:
                with VectorFile(path) as vf:
                    runs.append((path, vf.seed))
            report.write_text(args.ucis, report.ucis_xml(merged, name, runs), force=args.force)
            print(f"wrote {args.ucis} (UCIS XML)")
        if args.yaml:
            report.write_text(args.yaml, report.cocotb_yaml(merged, name), force=args.force)
            print(f"wrote {args.yaml} (cocotb-coverage YAML)")
        if args.html:
            report.write_text(args.html, report.html_report(merged, name, files, args.per_channel), force=args.force)
            print(f"wrote {args.html} (HTML)")
        if holes:
            print(f"--require not met: {len(holes)} required bin{'s' if len(holes) != 1 else ''} never hit: "
                  + ", ".join(f"{layer}.{bin_name}" for layer, bin_name in holes))
            status = 1
    return status


def _cmd_sweep(args) -> int:
    from pathlib import Path

    from refmodel import sweep
    from refmodel.sweep_report import PLAN, write_plan

    if args.workers is not None and args.scheduler:
        raise _UsageError("--workers sizes a local cluster, --scheduler names an existing one: give one of them")
    _need_dask()
    jobs = sweep.plan(args.spec, sweep.parse_seeds(args.seeds), sweep.parse_vary(args.vary),
                      record=_record(args.record), compression=args.compression, check_cmd=args.check_cmd,
                      check_timeout=args.check_timeout)
    directory = Path(args.out)
    if directory.is_dir() and any(directory.iterdir()) and not (directory / PLAN).is_file():
        raise _UsageError(f"{directory}: holds files but no {PLAN}: give an empty or new directory, or a sweep's")
    directory.mkdir(exist_ok=True)
    options = {"seeds": args.seeds, "vary": args.vary, "record": args.record, "compression": args.compression,
               "check_cmd": args.check_cmd}
    write_plan(directory, str(Path(args.spec).resolve()), options, jobs)
    todo = sweep.pending(jobs, directory, args.rerun_failed)
    print(f"sweep of {len(jobs)} jobs into {directory}: {len(jobs) - len(todo)} done before, {len(todo)} to run")
    if todo:
        from refmodel.progress import progress_bar

        with sweep.dask_client(args.workers, args.scheduler) as client, \
                progress_bar(len(todo), "sweep", "job", force=args.progress) as bar:
            sweep.run_sweep(todo, directory, client, on_entry=lambda entry: bar.update(1))
    return _sweep_summary(directory, args)


def _cmd_sweep_report(args) -> int:
    return _sweep_summary(args.dir, args)


def _need_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise _UsageError("refmodel sweep runs on Dask: install it with pip install 'refmodel[sweep]' "
                          "(dask[distributed] and tqdm)") from None


def _sweep_summary(directory, args) -> int:
    """Print the sweep's report (and write its coverage exports): 0 when every planned job ran
    and none failed, else 1."""
    from refmodel import coverage_report as report
    from refmodel.sweep_report import summary

    report.need(*[export for export in ("ucis",) if args.ucis])
    text, coverages, ok = summary(directory, args.per_channel)
    print(text)
    if (args.ucis or args.html) and len(coverages) != 1:
        raise _UsageError(f"the sweep's files hold {len(coverages)} network structures; --ucis and --html export the "
                          "coverage of one")
    if args.ucis or args.html:
        (merged, files), = coverages
        title = f"sweep {directory}"
        if args.ucis:
            report.write_text(args.ucis, report.ucis_xml(merged, title, [(f, None) for f in files]))
            print(f"wrote {args.ucis} (UCIS XML)")
        if args.html:
            report.write_text(args.html, report.html_report(merged, title, files, args.per_channel))
            print(f"wrote {args.html} (HTML)")
    return 0 if ok else 1


def _cmd_cost(args) -> int:
    from refmodel import cost
    from refmodel.spec import load_spec

    if args.spec is None and not args.from_vectors:
        raise _UsageError("the cost needs SPEC, or --from-vectors FILE")
    spec = None if args.spec is None else load_spec(args.spec)
    if args.from_vectors:
        from refmodel.vectors import VectorFile, VectorFileError

        with VectorFile(args.from_vectors) as vf:
            if spec is None and vf.network is None:
                raise VectorFileError(f"{vf.path}: its config is not a run config of refmodel gen; give SPEC")
            network = vf.network if spec is None else spec.network
            figures = cost.measure_vectors(network, vf, timesteps=args.timesteps)
    elif args.static:
        figures = cost.estimate(spec.network, spec.stimulus.timesteps if args.timesteps is None else args.timesteps)
    else:
        figures = cost.measure_spec(spec, timesteps=args.timesteps)
    text = {"table": figures.to_table, "json": figures.to_json, "csv": figures.to_csv}[args.format]()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _qformat(text):
    """An argparse type: a QFormat written as ``u8.0``, ``s16.8`` (signed, bits, frac)."""
    from refmodel.fixed import FixedPointError, QFormat

    match = re.fullmatch(r"([su])(\d+)\.(-?\d+)", text.strip())
    try:
        if match is None:
            raise FixedPointError("write it as u<bits>.<frac> or s<bits>.<frac>, e.g. u8.0 or s16.8")
        return QFormat(int(match[2]), int(match[3]), signed=match[1] == "s")
    except FixedPointError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a format: {err}") from None


def _cmd_import(args) -> int:
    from refmodel.interop import nir as nirlib
    from refmodel.spec import Spec, StimulusSpec, save_spec

    options = {key: getattr(args, key) for key in ("weight_bits", "bias_bits", "vm_bits", "leak_bits", "rounding",
                                                   "overflow", "input_format", "dt", "reset", "compare", "exact")
               if getattr(args, key) not in (None, False)}
    suffix = args.model.rsplit(".", 1)[-1].lower()
    if suffix == "nir":
        profile = nirlib.load_profile(args.profile, **options) if args.profile else nirlib.Profile(**options)
        network, lines = nirlib.import_nir(args.model, profile, name=args.name)
    elif suffix == "onnx":
        network, lines = _import_onnx(args)
    else:
        raise _UsageError(f"{args.model}: refmodel imports .nir and .onnx models")
    save_spec(Spec(network, StimulusSpec(), {}), args.out)
    print(f"imported {args.model} as network {network.name!r} ({len(network.layers)} layers) into {args.out}:")
    print("\n".join(f"  {line}" for line in lines))
    return 0


def _import_onnx(args):
    """The conversion of an ONNX model (docs/conversion.md): calibration images from the .npz's ``x``."""
    import numpy as np

    from refmodel.interop.onnx import import_onnx

    if args.calibration is None:
        raise _UsageError("an ONNX model is converted on calibration images: give --calibration data.npz (key x)")
    try:
        with np.load(args.calibration) as data:
            x_calib = data["x"]
    except (OSError, ValueError, KeyError) as err:
        raise _UsageError(f"--calibration {args.calibration}: no array x in an .npz ({err})") from None
    options = {key: getattr(args, key) for key in ("input_format", "weight_bits", "percentile", "pooling", "readout",
                                                   "reset", "name") if getattr(args, key) is not None}
    return import_onnx(args.model, x_calib, **options)


def _cmd_export_nir(args) -> int:
    from refmodel.interop.nir import export_nir

    if args.source.endswith(".h5"):
        from refmodel.vectors import VectorFile, VectorFileError

        with VectorFile(args.source) as vf:
            if vf.network is None:
                raise VectorFileError(f"{vf.path}: its config is not a run config of refmodel gen: no network")
            network = vf.network
    else:
        from refmodel.spec import load_spec

        network = load_spec(args.source).network
    export_nir(network, args.out)
    print(f"wrote {args.out}: network {network.name!r}, {len(network.layers)} layers")
    return 0


def _cmd_export_hex(args) -> int:
    from refmodel.vectors import export_hex

    manifest = export_hex(args.file, args.dir, force=args.force)
    print(f"wrote {len(manifest['files'])} hex files and manifest.json to {args.dir}")
    return 0


def _cmd_export_sv(args) -> int:
    from refmodel.vectors import export_sv

    text = export_sv(args.file, args.out, force=args.force)
    macros = [line for line in text.splitlines() if line.startswith("`define REFMODEL_")]
    print(f"wrote {len(macros) - 1} macros to {args.out}")  # less the include guard
    return 0


class _UsageError(RefmodelError):
    """A combination of arguments argparse cannot refuse by itself."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (like KeyboardInterrupt for SIGINT) so that every
    writer's cleanup runs: no temporary file survives."""


def _terminate(signum, frame):
    raise Terminated


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (not the usage text) and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(lo, hi=None):
    """An argparse type: an integer in lo..hi (no upper bound when hi is None)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {f'>= {lo}' if hi is None else f'in {lo}..{hi}'}, got {value}")
        return value

    return parse


FORCE_HELP = "write through a symbolic link at the output path (refused without --force)"


def build_parser() -> argparse.ArgumentParser:
    from refmodel import __version__
    from refmodel.encode import SEED_MAX
    from refmodel.limits import MAX_BATCH, MAX_TIMESTEPS
    from refmodel.vectors.chunks import COMPRESSIONS
    from refmodel.waves import MAX_SIGNALS, WINDOW as WAVE_WINDOW

    parser = _Parser(prog="refmodel", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"refmodel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo", help="run the built-in example and print what it computed",
        description="Convert the built-in CNN trained on handwritten digits to a bit-exact spiking network, "
                    "print its accuracy against timesteps and its cost per max-pooling variant, and write the plot, "
                    "the network spec (TOML + .npz) and its vector file into DIR. 'refmodel demo dtscnn': a "
                    "dual-threshold spiking CNN (DT-SCNN) against a conventional one at one timestep, both trained "
                    "on the same digits: float and bit-exact integer accuracy, conv operations, Vm and weight "
                    "storage, and the DT network's vector file.")
    demo.add_argument("example", nargs="?", choices=("dtscnn",),
                      help="dtscnn: the DT-SCNN demo (default: the conversion demo)")
    demo.add_argument("--out", default="refmodel-demo", metavar="DIR",
                      help="directory for the plot and the vector file (default ./refmodel-demo)")
    demo.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    demo.set_defaults(func=_cmd_demo)
    gen = commands.add_parser(
        "gen", help="run a network spec bit-exactly and write its HDF5 vector file",
        description="Run the network of SPEC (a TOML spec, docs/spec.md) over its stimulus and write the "
                    "vector file (docs/vectors.md): parameters, stimulus, per-timestep traces, outputs and "
                    "overflow counts. Options override the spec's [stimulus] settings.")
    gen.add_argument("spec", help="network spec (TOML)")
    gen.add_argument("--out", required=True, help="vector file to write (HDF5); with --cover, a directory")
    gen.add_argument("--timesteps", type=_integer(1, MAX_TIMESTEPS), help=f"timesteps T (1..{MAX_TIMESTEPS})")
    gen.add_argument("--batch", type=_integer(1, MAX_BATCH), help=f"batch size N (1..{MAX_BATCH})")
    gen.add_argument("--seed", type=_integer(0, SEED_MAX),
                     help=f"seed of the random stimulus source and encoder (0..{SEED_MAX})")
    gen.add_argument("--range", nargs=2, type=int, metavar=("LO", "HI"),
                     help="codes LO..HI that the random stimulus source draws from (default: the spec's range, else "
                          "every code of its format)")
    gen.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="set a field of the spec first: LAYER.FIELD=VALUE or stimulus.FIELD=VALUE (a TOML value, "
                          "e.g. if1.threshold=8000, conv1.overflow=WRAP, conv1.acc_format={bits=12}); repeatable")
    gen.add_argument("--record", nargs="+", default=["all"], metavar="WHAT",
                     help="traces to record: all (default), none, or items LAYER.SIGNAL, LAYER or SIGNAL")
    gen.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    gen.add_argument("--force", action="store_true", help=FORCE_HELP)
    gen.add_argument("--no-coverage", action="store_true",
                     help="do not count the functional coverage bins nor store them (the file then has no coverage "
                          "group)")
    gen.add_argument("--compression", choices=COMPRESSIONS, default=COMPRESSIONS[0],
                     help="how the file's datasets are stored: fast (default: shuffle + deflate level 1, by libdeflate "
                          "when refmodel[fast] is installed, else zlib), small (deflate level 6: a few percent "
                          "smaller, several times slower) or none (no filter: largest, fastest); the file records "
                          "which (docs/vectors.md §5)")
    gen.add_argument("--cover", metavar="BINS",
                     help="coverage-directed: draw runs of new seeds (seed, seed + 1, ...) until the bins are hit: "
                          "all, or a comma list of LAYER.BIN or BIN; write the fewest files that hit them into the "
                          "directory --out (exit status 1 if some stay unhit)")
    gen.add_argument("--budget", type=_integer(1, 1_000_000), metavar="N",
                     help="with --cover: at most N runs (default 100)")
    gen.add_argument("--scale", action="store_true",
                     help="with --cover and a random source: run i also draws its codes from a range that cycles "
                          "toward the bounds m..M of the format: m..M, m..m, M..M, m..m+(M-m)//8, M-(M-m)//8..M; the "
                          "files are <network>_seed<S>_range<LO>_<HI>.h5 (docs/coverage.md §7)")
    gen.set_defaults(func=_cmd_gen)
    inspect = commands.add_parser(
        "inspect", help="validate a vector file and summarize it: layers, shapes, formats, spike rates, overflows",
        description="Validate a vector file (its structure, its config, and every value: each chunk's checksum "
                    "and format) and print its layers, shapes, formats, spike rate per layer and overflow counts.")
    inspect.add_argument("file", help="vector file (HDF5)")
    inspect.set_defaults(func=_cmd_inspect)
    check = commands.add_parser(
        "check", help="compare two vector files bit for bit (exit 0 equal, 1 different, 2 unreadable)",
        description="Compare OTHER with GOLDEN: print the first mismatch (layer, signal, timestep, batch "
                    "index, channel, y, x, expected, got) and the number of mismatches per signal. "
                    "Exit status 0 when equal, 1 when not, 2 when a file cannot be read.")
    check.add_argument("golden", help="the golden vector file")
    check.add_argument("other", help="the vector file to check against it")
    check.add_argument("--vcd", metavar="DIFF.vcd",
                       help="also write both files' values of the first mismatch's layer and sample around it, and a "
                            "mismatch marker, as a VCD wave file (docs/rtl-flow.md §6)")
    check.add_argument("--window", type=_integer(0), default=WAVE_WINDOW, metavar="STEPS",
                       help=f"with --vcd: timesteps shown before and after the first mismatch (default {WAVE_WINDOW})")
    check.add_argument("--max-signals", type=_integer(1), default=MAX_SIGNALS, metavar="N",
                       help=f"with --vcd: show only the mismatch's channel when the layer has more signals than N "
                            f"(default {MAX_SIGNALS})")
    check.add_argument("--force", action="store_true", help=FORCE_HELP)
    check.set_defaults(func=_cmd_check)
    export_vcd = commands.add_parser(
        "export-vcd", help="write a vector file's traces as a VCD wave file (GTKWave, ...)",
        description="Write the traces of FILE as a value change dump: timestep t is the clock cycle from t ns to "
                    "t+1 ns (clk rises at t ns), a scope per layer (and per sample when several), a register per "
                    "element named c<c>_y<y>_x<x> holding its two's-complement code at the signal's width "
                    "(docs/rtl-flow.md §6).")
    export_vcd.add_argument("file", help="vector file (HDF5)")
    export_vcd.add_argument("out", help="VCD file to write")
    export_vcd.add_argument("--layers", metavar="L1,L2", help="only these layers (default: every layer with traces)")
    export_vcd.add_argument("--signals", metavar="S1,S2", help="only these signals, e.g. v_pre,spikes (default: all)")
    export_vcd.add_argument("--samples", metavar="N1,N2", help="only these samples of the batch (default: all)")
    export_vcd.add_argument("--max-signals", type=_integer(1), default=MAX_SIGNALS, metavar="N",
                            help=f"refuse a file of more than N element signals (default {MAX_SIGNALS})")
    export_vcd.add_argument("--force", action="store_true", help=FORCE_HELP)
    export_vcd.set_defaults(func=_cmd_export_vcd)
    export = commands.add_parser(
        "export-hex", help="write $readmemh files and a manifest.json for a vector file",
        description="Write one $readmemh file per parameter, stimulus, output, count and per trace "
                    "timestep (two's complement at the declared width) and manifest.json into DIR, "
                    "which must not exist or be empty.")
    export.add_argument("file", help="vector file (HDF5)")
    export.add_argument("dir", help="output directory")
    export.add_argument("--force", action="store_true", help=FORCE_HELP)
    export.set_defaults(func=_cmd_export_hex)
    export_sv = commands.add_parser(
        "export-sv", help="write the network's parameters as a Verilog/SystemVerilog header of `define macros",
        description="Write the parameters of the run in FILE (run and network constants, every layer's "
                    "formats, modes, shapes, thresholds and other parameters of rank <= 1, each signal's "
                    "format) as `define macros REFMODEL_<layer>_<FIELD> into OUT, for RTL and testbenches "
                    "to take their parameters from the file that holds the vectors (docs/rtl-flow.md).")
    export_sv.add_argument("file", help="vector file (HDF5) written by refmodel gen")
    export_sv.add_argument("out", help="header to write (e.g. refmodel_params.vh)")
    export_sv.add_argument("--force", action="store_true", help=FORCE_HELP)
    export_sv.set_defaults(func=_cmd_export_sv)
    cov = commands.add_parser(
        "coverage", help="merge the functional coverage of vector files, check it, export it (UCIS, YAML, HTML)",
        description="Read the functional coverage of FILES (run files of one network written by refmodel gen), "
                    "merge it (hits summed bin by bin) and print, per layer, each bin with its hits, the runs that "
                    "hit it and its status (hit, HOLE or unreachable and why), then the percentage of reachable bins "
                    "hit (docs/coverage-reports.md). Exit status 1 when a bin of --require stayed a hole, 2 for bad "
                    "input (a file without coverage or of another network, an unknown or unreachable required bin, "
                    "a missing export library).")
    cov.add_argument("files", nargs="+", metavar="FILE", help="vector files (HDF5) of one network")
    cov.add_argument("--per-channel", action="store_true", help="also print the hits of each bin per channel")
    cov.add_argument("--require", action="append", metavar="BINS",
                     help="all (every reachable bin) or LAYER.BIN,... that must be hit (else exit status 1)")
    cov.add_argument("--ucis", metavar="OUT.xml", help="write the merged coverage as a UCIS XML database (pyucis)")
    cov.add_argument("--yaml", metavar="OUT.yml", help="write it in cocotb-coverage's YAML format")
    cov.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML report (tables, bar charts)")
    cov.add_argument("--force", action="store_true", help=FORCE_HELP)
    cov.set_defaults(func=_cmd_coverage)
    sweep = commands.add_parser(
        "sweep", help="generate (and check against a DUT) the vector files of seeds x variants of a spec on Dask",
        description="Generate the vector file of every seed and variant of SPEC into DIR/VARIANT/seedS.h5, each "
                    "the file refmodel gen SPEC --set ... --seed S writes, on a local Dask cluster or an existing one; "
                    "optionally run a DUT on each and compare; record each job in DIR/manifest.jsonl; then print the "
                    "report (docs/sweep.md). A rerun resumes: jobs done before are skipped. Exit status 1 when a job "
                    "failed or mismatched.")
    sweep.add_argument("spec", help="network spec (TOML)")
    sweep.add_argument("--out", required=True, metavar="DIR", help="the sweep directory (new, empty, or a sweep's)")
    sweep.add_argument("--seeds", required=True, help="A:B (seeds A..B-1) or S1,S2,...")
    sweep.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                       help="values of a field, as gen --set takes them (e.g. if1.threshold=8000,12000); repeatable: "
                            "the variants are the cross product")
    sweep.add_argument("--record", nargs="+", default=["all"], metavar="WHAT", help="traces to record, as for gen")
    sweep.add_argument("--compression", choices=COMPRESSIONS, default=COMPRESSIONS[0],
                       help="how the files' datasets are stored, as for gen (default fast)")
    sweep.add_argument("--workers", type=_integer(1, 1024), help="local worker processes (default: the cores)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster, e.g. tcp://host:8786")
    sweep.add_argument("--check-cmd", metavar="CMD",
                       help="run on each file: {vectors} is the file, {out} the vector file the DUT writes (then "
                            "compared with it); without {out}, exit status 0 is a pass and 1 a mismatch")
    sweep.add_argument("--check-timeout", type=float, default=3600, metavar="SECONDS",
                       help="kill a DUT command still running after SECONDS (a DUT error; default 3600)")
    sweep.add_argument("--rerun-failed", action="store_true", help="also redo the jobs that failed or mismatched")
    sweep.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    report_parsers = [sweep]
    sweep.set_defaults(func=_cmd_sweep)
    sweep_report = commands.add_parser(
        "sweep-report", help="print the report of a sweep directory",
        description="Print the report of the sweep in DIR: jobs by result, the failures, the slowest jobs and the "
                    "coverage of its files merged. Exit status 1 when a job failed or did not run.")
    sweep_report.add_argument("dir", help="the sweep directory")
    report_parsers.append(sweep_report)
    sweep_report.set_defaults(func=_cmd_sweep_report)
    for command in report_parsers:
        command.add_argument("--per-channel", action="store_true", help="print the hits of each bin per channel")
        command.add_argument("--ucis", metavar="OUT.xml", help="write the merged coverage as a UCIS XML database")
        command.add_argument("--html", metavar="OUT.html", help="write the merged coverage as an HTML report")
    cost = commands.add_parser(
        "cost", help="operations, memory and memory traffic per layer, static and measured",
        description="Print the cost of SPEC's network per layer and in total (docs/cost-model.md): static "
                    "bounds per sample and timestep, memory per sample, and the figures measured over a run: "
                    "by default a run of the spec's [stimulus] (as refmodel gen would run it), or the run "
                    "recorded in a vector file (--from-vectors, needs its spike traces), or none (--static).")
    cost.add_argument("spec", nargs="?", help="network spec (TOML); optional with --from-vectors")
    cost.add_argument("--timesteps", type=_integer(1, MAX_TIMESTEPS),
                      help="timesteps T (default: the spec's; with --from-vectors: the file's)")
    source = cost.add_mutually_exclusive_group()
    source.add_argument("--from-vectors", metavar="FILE",
                        help="measure from the spikes recorded in this vector file (its network too, without SPEC)")
    source.add_argument("--static", action="store_true", help="static figures only, no run")
    cost.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    cost.set_defaults(func=_cmd_cost)
    imp = commands.add_parser(
        "import", help="write a spec (TOML + .npz) from a NIR graph or an ONNX model",
        description="Read MODEL (.nir: a spiking network from snnTorch, sinabs, Norse, ...; .onnx: a float CNN to "
                    "convert) and write the refmodel spec OUT with its integer parameters, printing every format "
                    "chosen, every value clipped, the largest quantization errors and every assumption "
                    "(docs/interop.md).")
    imp.add_argument("model", help="model file: .nir or .onnx")
    imp.add_argument("--out", required=True, help="spec to write (TOML; its arrays go to the .npz beside it)")
    imp.add_argument("--name", help="network name (default: the model file's stem)")
    imp.add_argument("--weight-bits", type=_integer(1, 62), help="weight width, signed (default 8)")
    imp.add_argument("--bias-bits", type=_integer(1, 62), help="bias width, signed (default 16)")
    imp.add_argument("--vm-bits", type=_integer(1, 62), help="membrane potential width, signed (default 16)")
    imp.add_argument("--leak-bits", type=_integer(1, 62), help="NIR: fraction bits of a leak multiplier (default 12)")
    imp.add_argument("--rounding", help="rounding of parameters and leaks (default RND_CONV)")
    imp.add_argument("--overflow", help="overflow of the Vm registers (default SAT)")
    imp.add_argument("--input-format", type=_qformat, help="format of the network input, e.g. u1.0 (spikes, the "
                                                           "default for NIR) or u8.0")
    imp.add_argument("--dt", type=float, help="NIR: the timestep (default: the graph's, else inferred, see the doc)")
    imp.add_argument("--reset", help="NIR: nir (to v_reset, as NIR defines it; the default), subtract, zero or "
                                     "value; ONNX: subtract (default) or zero")
    imp.add_argument("--compare", choices=(">", ">="), help="NIR: the threshold compare (default '>', as NIR defines it)")
    imp.add_argument("--exact", action="store_true", help="refuse any rounding of a parameter")
    imp.add_argument("--profile", metavar="FILE", help="NIR: a TOML of these options, with [layers.NODE] overrides")
    imp.add_argument("--calibration", metavar="NPZ", help="ONNX: calibration images (key x) for the normalization")
    imp.add_argument("--percentile", type=float, help="ONNX: normalization percentile (default 99.9)")
    imp.add_argument("--pooling", help="ONNX: max-pooling variant (docs/conversion.md)")
    imp.add_argument("--readout", help="ONNX: readout (docs/conversion.md)")
    imp.set_defaults(func=_cmd_import)
    export_nir = commands.add_parser(
        "export-nir", help="write a spec's (or a vector file's) network as a NIR graph",
        description="Write the network of SOURCE (a spec, or a vector file written by refmodel gen) as a NIR graph: "
                    "float parameters = integer codes x 2^-frac, and each node's refmodel layer config in its "
                    "metadata, so that refmodel import gives the same network back (docs/interop.md).")
    export_nir.add_argument("source", help="spec (TOML) or vector file (.h5)")
    export_nir.add_argument("out", help="NIR file to write")
    export_nir.set_defaults(func=_cmd_export_nir)
    return parser


#: Numba's OpenMP threads (libgomp) spin this many times at a barrier before they sleep, unless
#: the environment sets GOMP_SPINCOUNT: libgomp's default, 300,000, made vgg's simulation 2.5-8x
#: slower with one other busy process on 2 cores, 10,000 at most 2.3x, at no cost on a quiet
#: machine (docs/performance.md, "Threads on a shared machine").  Only the command sets it: in a
#: library it would also slow another OpenMP library of the process (torch's: 1.8x).
SPIN_COUNT = "10000"


def main(argv=None) -> int:
    """Run one command: exit status 0 (1 for ``check`` of differing files); 2 with one line
    ``refmodel COMMAND: error: ...`` for a RefmodelError; 130 for SIGINT, 143 for SIGTERM;
    141, silently, when stdout's reader has gone (``refmodel ... | head``)."""
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except RefmodelError as exc:
        print(f"refmodel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"refmodel {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"refmodel {args.command}: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:  # the reader of stdout went away (`| head`): end quietly, as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush cannot fail
        return 141
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
