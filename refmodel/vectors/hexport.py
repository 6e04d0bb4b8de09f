"""Export a vector file as ``$readmemh`` files plus ``manifest.json`` (docs/vectors.md)."""

from __future__ import annotations

import json
import os

import numpy as np

from refmodel.files import AtomicOutput
from refmodel.vectors.reader import VectorFile

HEX_FORMAT = "refmodel-hex"
HEX_VERSION = 1
_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


def timestep_digits(timesteps: int) -> int:
    """Digits of the timestep in trace file names ``t<t:0Nd>.hex``: at least 4."""
    return max(4, len(str(timesteps - 1)))


def hex_lines(values, bits) -> bytes:
    """One line per value (row-major): two's complement at ``bits`` bits, ``ceil(bits/4)``
    lowercase hex digits, zero-padded, each line ending in ``\\n``."""
    digits = -(-bits // 4)
    codes = np.asarray(values).ravel().astype(np.uint64) & np.uint64((1 << bits) - 1)
    shifts = np.arange(4 * (digits - 1), -1, -4, dtype=np.uint64)
    text = np.empty((codes.size, digits + 1), np.uint8)
    text[:, :digits] = _DIGITS[(codes[:, None] >> shifts) & np.uint64(15)]
    text[:, digits] = ord("\n")
    return text.tobytes()


def _write(root, rel, values, info, timestep, files):
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(hex_lines(values, info.fmt.bits))
    files.append({
        "file": rel, "dataset": f"/{info.path}", "kind": info.kind, "layer": info.layer, "name": info.name,
        "timestep": timestep, "bits": info.fmt.bits, "frac": info.fmt.frac, "signed": info.fmt.signed,
        "digits": -(-info.fmt.bits // 4), "depth": int(np.asarray(values).size),
        "shape": list(np.shape(values)), "axes": list(info.axes[1:] if timestep is not None else info.axes),
    })


def export_hex(vector_path, out_dir, *, force=False) -> dict:
    """Write the hex files and ``manifest.json`` of ``vector_path`` into the new directory
    ``out_dir`` (which must not exist, or be empty; ``refmodel.files`` gives the rules, and
    ``force`` writes through a symbolic link) atomically; returns the manifest."""
    with AtomicOutput(out_dir, force=force, directory=True) as out, VectorFile(vector_path) as vf:
        files = []
        width = timestep_digits(vf.timesteps)
        for info in vf.datasets():
            if info.streamed:
                for t, values in enumerate(vf.steps(info.path)):
                    _write(out.tmp, f"{info.path}/t{t:0{width}d}.hex", values, info, t, files)
            else:
                _write(out.tmp, f"{info.path}.hex", vf.read(info.path), info, None, files)
        manifest = {
            "format": HEX_FORMAT, "format_version": HEX_VERSION, "source": os.path.basename(vf.path),
            "config_sha256": vf.config_sha256, "timesteps": vf.timesteps, "batch": vf.batch,
            "order": "row-major (C order): the last axis varies fastest", "files": files,
        }
        with open(os.path.join(out.tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
    return manifest
