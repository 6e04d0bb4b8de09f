"""Progress bars of the command line, on stderr, through tqdm: shown when stderr is a terminal
or when forced (``--progress``), never in a log (CI's, a redirected stderr).  tqdm is optional
(the extras ``sweep`` and ``test`` bring it): without it there is no bar."""

from __future__ import annotations

import sys


class _Hidden:
    """What ``progress_bar`` gives without tqdm: counts, shows nothing."""

    def __init__(self, total):
        self.n, self.total = 0, total

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(total: int, desc: str, unit: str, force: bool = False):
    """A bar of ``total`` ``unit``s labelled ``desc`` (a context manager; ``update(n)`` after
    ``n`` more are done)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Hidden(total)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=False if force else None)
