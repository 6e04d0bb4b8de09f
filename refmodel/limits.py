"""Resource limits, checked before anything is allocated (docs/spec.md, "Limits").

Every size that multiplies into memory (input shape, padding, channels, batch, timesteps, the
traces a run keeps, the arrays of a spec's .npz) is checked against the memory limit: the
machine's physical memory, or ``REFMODEL_MAX_BYTES`` (bytes) when set.  The hard caps bound
what no memory check does: the Python loop over timesteps and the size of a spec's text.
The estimates count the arrays a run holds at once (int64 unless stated), not Python's small
objects: they guard against sizes that cannot run, they do not predict the peak exactly.
"""

from __future__ import annotations

import math
import os
import resource

from refmodel.errors import NetworkError, RefmodelError, ResourceError

__all__ = ["MAX_TIMESTEPS", "MAX_BATCH", "MAX_SPEC_BYTES", "ResourceError", "memory_limit", "check_memory",
           "human_bytes", "elements"]

#: Timesteps of one run: a run steps in Python, so 2**24 steps already take hours.
MAX_TIMESTEPS = 1 << 24
#: Samples of one run.
MAX_BATCH = 1 << 24
#: Bytes of a spec's TOML text (large arrays belong in its .npz).
MAX_SPEC_BYTES = 64 << 20


def memory_limit() -> tuple[int, str]:
    """(bytes, where the limit comes from): ``REFMODEL_MAX_BYTES``, else the physical memory,
    or the process's address-space limit (``ulimit -v``) when that is smaller."""
    text = os.environ.get("REFMODEL_MAX_BYTES")
    if text is not None:
        if not text.strip().isdigit() or int(text) < 1:
            raise RefmodelError(f"REFMODEL_MAX_BYTES = {text!r} must be a number of bytes >= 1")
        return int(text), "REFMODEL_MAX_BYTES"
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY and address_space < physical:
        return address_space, "the address-space limit, ulimit -v"
    return physical, "physical memory"


def human_bytes(n: int) -> str:
    """``n`` bytes in decimal units: 512 B, 1.9 TB."""
    for unit, size in (("EB", 10**18), ("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def elements(shape) -> int:
    """The number of values of an array of ``shape`` (exact, whatever its size)."""
    return math.prod(int(d) for d in shape)


def check_memory(name: str, field: str, value, parts: dict, place=NetworkError) -> None:
    """ResourceError unless the bytes of ``parts`` ({what: bytes}) fit the memory limit; the
    message names the place (a PlacedError class: ``place`` ``name``), ``field`` = ``value``,
    the total and its largest parts."""
    total = sum(parts.values())
    limit, source = memory_limit()
    if total <= limit:
        return
    largest = sorted(((b, what) for what, b in parts.items() if b), reverse=True)[:3]
    shown = ", ".join(f"{what} {human_bytes(b)}" for b, what in largest)
    raise ResourceError(place(name, field, value, f"needs {human_bytes(total)} of memory ({shown}); the limit is "
                                                  f"{human_bytes(limit)} ({source})"))
