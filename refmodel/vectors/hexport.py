"""Export a vector file as ``$readmemh`` files plus ``manifest.json`` (docs/vectors.md)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from refmodel.vectors.reader import VectorFile
from refmodel.vectors.schema import VectorFileError, chmod_default

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


def export_hex(vector_path, out_dir) -> dict:
    """Write the hex files and ``manifest.json`` of ``vector_path`` into the new directory
    ``out_dir`` (which must not exist, or be empty) atomically; returns the manifest."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise VectorFileError(f"{out_dir}: the output directory exists and is not empty")
    with VectorFile(vector_path) as vf:
        parent = os.path.dirname(out_dir)
        try:
            tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp")
        except OSError as exc:
            raise VectorFileError(f"{out_dir}: cannot create a directory in {parent} ({exc.strerror})") from None
        try:
            files = []
            width = timestep_digits(vf.timesteps)
            for info in vf.datasets():
                if info.kind in ("spikes", "trace"):
                    for t in range(vf.timesteps):
                        _write(tmp, f"{info.path}/t{t:0{width}d}.hex", vf.read(info.path, t), info, t, files)
                else:
                    _write(tmp, f"{info.path}.hex", vf.read(info.path), info, None, files)
            manifest = {
                "format": HEX_FORMAT, "format_version": HEX_VERSION, "source": os.path.basename(vf.path),
                "config_sha256": vf.config_sha256, "timesteps": vf.timesteps, "batch": vf.batch,
                "order": "row-major (C order): the last axis varies fastest", "files": files,
            }
            with open(os.path.join(tmp, "manifest.json"), "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)
                f.write("\n")
            chmod_default(tmp, 0o777)
            os.replace(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest
