"""Export the parameters of a vector file's network as a Verilog header of ``define`` macros
(docs/rtl-flow.md), so that RTL and the golden model read their parameters from one source.

Every macro is ``REFMODEL_<NAME>`` (run and network) or ``REFMODEL_<layer>_<FIELD>`` (the
layer name as written, the field upper case):

* integers in decimal, booleans 0/1, modes as Verilog strings (``"SAT"``, ``">="``);
* a format field ``f`` as ``F_BITS``, ``F_FRAC``, ``F_SIGNED``;
* a (y, x) pair ``f`` as ``F_Y``, ``F_X``;
* a parameter dataset of rank 0 or 1 (thresholds, v_min, biases, ...) as its two's-complement
  codes at its width: a scalar ``W'hX``, a vector the concatenation ``{e[K-1], ..., e[0]}`` (so
  element ``k`` is bits ``[k*W +: W]``), with ``F_BITS``, ``F_FRAC``, ``F_SIGNED`` and ``F_COUNT``;
  weights of higher rank are left to ``refmodel export-hex``;
* each signal's format (``CURRENT``, ``V_PRE``, ``SPIKES``, ...) as ``F_BITS/FRAC/SIGNED``;
* the per-sample input and output shapes as ``IN_C``, ``IN_H``, ``IN_W`` (or ``IN_F``) and
  ``IN_SIZE``, likewise ``OUT_*`` (a merge's input shape is its inputs merged: its output's);
* the layers it reads, ``INPUTS`` (a string of names separated by spaces, ``"input"`` for the
  network input; given or by default the previous layer) and ``INPUT_COUNT``.

A field that is unset (None) has no macro: test it with ```ifdef``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from refmodel.files import AtomicOutput
from refmodel.fixed import QFormat
from refmodel.vectors.hexport import timestep_digits
from refmodel.vectors.reader import VectorFile
from refmodel.vectors.schema import VectorFileError, layer_key

PREFIX = "REFMODEL"


def _string(text: str) -> str:
    r"""A Verilog string literal (``\\``, ``"`` and newlines escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _code(value: int, fmt: QFormat) -> str:
    """``value`` as a sized hex literal of its two's-complement code at ``fmt.bits``."""
    return f"{fmt.bits}'h{int(value) & ((1 << fmt.bits) - 1):0{-(-fmt.bits // 4)}x}"


def _shape(prefix: str, shape) -> list[tuple[str, str, str]]:
    names = {1: ("F",), 3: ("C", "H", "W")}.get(len(shape), tuple(f"D{i}" for i in range(len(shape))))
    rows = [(f"{prefix}_{n}", str(d), "") for n, d in zip(names, shape)]
    return rows + [(f"{prefix}_SIZE", str(math.prod(shape)), "")]


def _format(prefix: str, fmt: QFormat, note="") -> list[tuple[str, str, str]]:
    return [(f"{prefix}_BITS", str(fmt.bits), note or str(fmt)), (f"{prefix}_FRAC", str(fmt.frac), ""),
            (f"{prefix}_SIGNED", str(int(fmt.signed)), "")]


def _param(prefix: str, values: np.ndarray, fmt: QFormat, axes) -> list[tuple[str, str, str]]:
    flat = values.ravel()
    if values.ndim == 0:
        text, note = _code(flat[0], fmt), f"{fmt}: {int(flat[0])}"
    else:
        text = "{" + ", ".join(_code(v, fmt) for v in flat[::-1]) + "}"
        note = f"{fmt} [{' '.join(axes)}], element k at [k*{fmt.bits} +: {fmt.bits}]: {flat.tolist()}"
    return [(prefix, text, note)] + _format(prefix, fmt) + [(f"{prefix}_COUNT", str(flat.size), "")]


def _field(prefix: str, value) -> list[tuple[str, str, str]]:
    """The macros of one config field (None: none)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [(prefix, str(int(value)), "")]
    if isinstance(value, int):  # small: counts, shifts, periods (the wide integers are parameter datasets)
        return [(prefix, str(value), "")]
    if isinstance(value, str):
        return [(prefix, _string(value), "")]
    if isinstance(value, dict) and set(value) == {"bits", "frac", "signed"}:
        return _format(prefix, QFormat.from_dict(value))
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [(f"{prefix}_Y", str(value[0]), ""), (f"{prefix}_X", str(value[1]), "")]
    raise AssertionError(f"{prefix}: no macro form for {value!r}")  # every config field type is covered above


def header_text(vf: VectorFile) -> str:
    """The header of the run in the open vector file ``vf`` (written by ``refmodel gen``)."""
    network = vf.network
    if network is None:
        raise VectorFileError(f"{vf.path}: its config is not a run config of refmodel gen: no network to export")
    config = vf.config["network"]
    rows = [
        (f"{PREFIX}_CONFIG_SHA256", f"256'h{vf.config_sha256}", "SHA-256 of the vector file's config_json"),
        (f"{PREFIX}_NETWORK", _string(network.name), ""),
        (f"{PREFIX}_TIMESTEPS", str(vf.timesteps), ""),
        (f"{PREFIX}_BATCH", str(vf.batch), ""),
        (f"{PREFIX}_SEED", str(vf.seed), ""),
        (f"{PREFIX}_TIMESTEP_DIGITS", str(timestep_digits(vf.timesteps)), "export-hex trace files: t%0<digits>d.hex"),
        (f"{PREFIX}_LAYERS", str(len(network.layers)), ""),
    ]
    rows += _shape(f"{PREFIX}_INPUT", network.input_shape) + _format(f"{PREFIX}_INPUT", network.input_format)
    sections = [("run and network", rows)]
    for index, (layer, entry) in enumerate(zip(network.layers, config["layers"])):
        prefix, info, site = f"{PREFIX}_{layer.name}", vf.layer(layer.name), network.sites[layer.name]
        shape, out_shape = site.input_shape, site.output_shape
        rows = [(f"{prefix}_LAYER_INDEX", str(index), ""), (f"{prefix}_KIND", _string(entry["kind"]), ""),
                (f"{prefix}_KEY", _string(layer_key(index, layer.name)), "group name in the vector file and hex tree"),
                (f"{prefix}_INPUTS", _string(" ".join(site.source_names)), "the layers it reads"),
                (f"{prefix}_INPUT_COUNT", str(len(site.source_names)), "")]
        rows += _shape(f"{prefix}_IN", shape) + _shape(f"{prefix}_OUT", out_shape)
        for field in sorted(set(entry) - {"kind", "name", "inputs"}):
            upper = f"{prefix}_{field.upper()}"
            if field in info.params:
                values, fmt = vf.param(layer.name, field)
                if values.ndim <= 1:
                    rows += _param(upper, values, fmt, vf.info(f"layers/{info.key}/params/{field}").axes)
            else:
                rows += _field(upper, entry[field])
        for (name, signal), fmt in network.formats.items():
            if name == layer.name:
                rows += _format(f"{prefix}_{signal.upper()}", fmt, f"{signal}: {fmt}")
        sections.append((f"layer {index}: {layer.name} ({entry['kind']}), {shape} -> {out_shape}", rows))
    names = [name for _, section in sections for name, _, _ in section]
    assert len(set(names)) == len(names), "macro names collide"
    guard = f"{PREFIX}_{vf.config_sha256[:16].upper()}_VH"
    lines = [
        f"// Parameters of network {network.name!r}, exported by refmodel export-sv from {os.path.basename(vf.path)}",
        f"// (refmodel {vf.refmodel_version}; config sha256 {vf.config_sha256}). Regenerate, do not edit.",
        "// Macros: docs/rtl-flow.md. Unset (None) fields have no macro.",
        f"`ifndef {guard}",
        f"`define {guard}",
    ]
    for title, section in sections:
        lines += ["", f"// {title}"]
        lines += [f"`define {name} {text}" + (f"  // {note}" if note else "") for name, text, note in section]
    lines += ["", f"`endif  // {guard}", ""]
    return "\n".join(lines)


def export_sv(vector_path, out_path, *, force=False) -> str:
    """Write the header of ``vector_path`` to ``out_path`` atomically (``refmodel.files`` gives
    the rules for the target; ``force`` writes through a symbolic link); returns its text."""
    with AtomicOutput(out_path, force=force) as out:
        with VectorFile(vector_path) as vf:
            text = header_text(vf)
        with open(out.tmp, "w") as f:
            f.write(text)
    return text
