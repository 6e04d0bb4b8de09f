"""Reading, merging, checking and exporting the functional coverage of vector files
(``refmodel coverage``, docs/coverage-reports.md).

``read_coverage(paths)`` reads the coverage of run files of one network and merges it
(``Coverage.merged``); ``unmet(coverage, require)`` gives the required bins that stayed holes.
The exports are text, built in memory and written atomically (``write_text``), with the same
bytes for the same inputs (no date, no user name, no dict-order dependence):

* ``ucis_xml``: a UCIS XML database written through pyucis (one covergroup type per layer kind,
  one covergroup instance per layer, one coverpoint per bin with one bin ``hit``);
* ``cocotb_yaml``: the YAML of cocotb-coverage's ``coverage_db.export_to_yaml``, written with
  PyYAML (which cocotb-coverage uses), readable by its ``merge_coverage``;
* ``html_report``: one self-contained HTML page (tables and inline SVG bar charts, no script).

The libraries of the first two are the optional extra ``coverage`` (``pip install
'refmodel[coverage]'``); ``need(...)`` refuses an export whose library is missing in one line.
"""

from __future__ import annotations

import html
import io
import math

from refmodel.coverage import Coverage, CoverageError, network_digest
from refmodel.files import AtomicOutput

__all__ = ["EXTRA", "need", "read_coverage", "by_network", "unmet", "ucis_xml", "cocotb_yaml", "html_report", "write_text"]

#: The optional extra that installs the export libraries.
EXTRA = "coverage"
#: The import and the PyPI package of each export that needs a library.
LIBRARIES = {"ucis": ("ucis", "pyucis"), "yaml": ("yaml", "pyyaml")}
#: The fixed date of the UCIS database and its history nodes (the files carry no real date).
UCIS_DATE = "20000101000000"
#: The type strings cocotb-coverage's export_to_yaml writes (``str(type(item))``).
COCOTB_ITEM = "<class 'cocotb_coverage.coverage.CoverItem'>"
COCOTB_POINT = "<class 'cocotb_coverage.coverage.CoverPoint'>"


def need(*exports) -> None:
    """CoverageError, in one line naming the extra, when the library of an export is missing."""
    import importlib

    for export in exports:
        module, package = LIBRARIES[export]
        try:
            importlib.import_module(module)
        except ImportError:
            raise CoverageError(f"--{export} needs the Python package {package}: install refmodel's extra "
                                f"'{EXTRA}' (pip install 'refmodel[{EXTRA}]')") from None


def read_coverage(paths) -> tuple[Coverage, dict]:
    """(the merged coverage of the run files ``paths``, the first file's run config).  Refuses,
    naming the file, a file that is not a run file, one without coverage, and one of another
    network than the first (``network_digest`` of its config)."""
    from refmodel.vectors import VectorFile, VectorFileError

    if not paths:
        raise CoverageError("no vector file given")
    merged = config = None
    first = None
    for path in paths:
        with VectorFile(path) as vf:
            if vf.network is None:
                raise VectorFileError(f"{vf.path}: its config is not a run config of refmodel gen: no network")
            coverage = vf.coverage()
            if coverage is None:
                raise VectorFileError(
                    f"{vf.path}: holds no coverage (format version {vf.format_version}"
                    + (", written with --no-coverage" if vf.format_version >= 3 else ", older than version 3")
                    + "); regenerate it with refmodel gen")
            digest = network_digest(vf.config)
            if merged is None:
                merged, config, first = coverage, vf.config, (vf.path, digest)
                continue
            if digest != first[1]:
                raise CoverageError(f"{vf.path}: network {vf.config['network']['name']!r} (digest {digest[:16]}) is "
                                    f"not the network of {first[0]} ({config['network']['name']!r}, digest "
                                    f"{first[1][:16]}): only the coverage of one network merges")
            try:
                merged = merged.merged(coverage)
            except CoverageError as exc:
                raise CoverageError(f"{vf.path}: its coverage does not merge with the files before it: {exc}") \
                    from None
    return merged, config


def by_network(paths) -> list:
    """``paths`` grouped by network (``network_digest`` of each run file's config), in the order
    each network first appears: a list of lists of paths."""
    from refmodel.vectors import VectorFile

    groups = {}
    for path in paths:
        with VectorFile(path) as vf:
            key = network_digest(vf.config) if vf.network is not None else path
        groups.setdefault(key, []).append(path)
    return list(groups.values())


def unmet(coverage: Coverage, require) -> list:
    """The (layer, bin) of ``require`` that stayed holes.  ``require``: "all" (every reachable
    bin) or items "LAYER.BIN" (a string of them separated by commas, or a list of such strings).
    An unknown item, or an unreachable bin (which no run can hit), is a CoverageError."""
    items = [item.strip() for text in ([require] if isinstance(require, str) else require)
             for item in text.split(",") if item.strip()]
    if not items:
        raise CoverageError("--require names no bin: give all or LAYER.BIN,...")
    if items == ["all"]:
        return coverage.holes()
    wanted = []
    for item in items:
        layer, dot, name = item.partition(".")
        if item == "all":
            raise CoverageError("--require all stands alone, not among LAYER.BIN items")
        if not dot or layer not in coverage.layers:
            raise CoverageError(f"--require {item!r}: write LAYER.BIN with LAYER one of {list(coverage.layers)}")
        cov = coverage.layers[layer]
        if name not in cov.hits:
            raise CoverageError(f"--require {item!r}: layer {layer!r} ({cov.kind}) has no bin {name!r} "
                                f"(its bins: {' '.join(cov.hits)})")
        if name in cov.unreachable:
            raise CoverageError(f"--require {item!r}: the bin is unreachable ({cov.unreachable[name]}), no run can "
                                f"hit it; require only reachable bins")
        wanted.append((layer, name))
    return [pair for pair in dict.fromkeys(wanted) if not coverage.hit(*pair)]


# ---------------------------------------------------------------------------------------- UCIS
def ucis_xml(coverage: Coverage, network: str, runs=()) -> str:
    """The UCIS XML database of ``coverage``, written by pyucis's ``XmlFactory``: instance
    ``network``; per layer kind a covergroup type, per layer its covergroup instance (named like
    the layer), per bin a coverpoint with one bin ``hit`` holding the hits summed over the
    channels (at_least 1); an unreachable bin's is an ignore bin.  ``runs``: (name, seed) of the
    merged files, one UCIS history node (test) each."""
    from refmodel import __version__
    from ucis import (UCIS_DU_MODULE, UCIS_ENABLED_BRANCH, UCIS_ENABLED_STMT, UCIS_HISTORYNODE_TEST,
                      UCIS_IGNOREBIN, UCIS_CVGBIN, UCIS_INST_ONCE, UCIS_INSTANCE, UCIS_OTHER, UCIS_TESTSTATUS_OK)
    from ucis.mem.mem_factory import MemFactory
    from ucis.xml.xml_factory import XmlFactory

    db = MemFactory.create()
    db.setWrittenBy("refmodel")
    db.setWrittenTime(UCIS_DATE)
    for name, seed in runs or [(network, 0)]:
        node = db.createHistoryNode(None, str(name), str(name), UCIS_HISTORYNODE_TEST)
        node.setDate(UCIS_DATE)
        node.setUserName("refmodel")
        node.setSeed(str(seed))
        node.setCmd("refmodel gen")
        node.setTestStatus(UCIS_TESTSTATUS_OK)
        node.setToolCategory("golden model")
        node.setVendorId("refmodel")
        node.setVendorTool("refmodel")
        node.setVendorToolVersion(__version__)
    du = db.createScope(network, None, 1, UCIS_OTHER, UCIS_DU_MODULE,
                        UCIS_ENABLED_STMT | UCIS_ENABLED_BRANCH | UCIS_INST_ONCE)
    top = db.createInstance(network, None, 1, UCIS_OTHER, UCIS_INSTANCE, du, UCIS_INST_ONCE)
    groups = {}
    for cov in coverage.layers.values():
        if cov.kind not in groups:
            groups[cov.kind] = top.createCovergroup(cov.kind, None, 1, UCIS_OTHER)
            groups[cov.kind].setAtLeast(1)
    for layer, cov in coverage.layers.items():
        instance = groups[cov.kind].createCoverInstance(layer, None, 1, UCIS_OTHER)
        instance.setAtLeast(1)
        for name in cov.hits:
            point = instance.createCoverpoint(name, None, 1, UCIS_OTHER)
            point.setAtLeast(1)
            point.createBin("hit", None, 1, cov.total(name), "hit",
                            UCIS_IGNOREBIN if name in cov.unreachable else UCIS_CVGBIN)
    out = io.StringIO()
    XmlFactory.write(db, out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------- YAML
def cocotb_yaml(coverage: Coverage, top: str) -> str:
    """The YAML that cocotb-coverage's ``coverage_db.export_to_yaml`` writes for a coverage
    tree ``top`` > one covergroup per layer (``top.<layer>``) > one coverpoint per reachable bin
    (``top.<layer>.<bin>``, its ``bins:_hits`` {hit: hits summed over the channels}, weight 1,
    at_least 1); ``size``, ``coverage`` and ``cover_percentage`` as cocotb-coverage counts them.
    Unreachable bins are left out (the format has no ignore bins), and so is a layer with no
    reachable bin."""
    import yaml

    data = {}
    for layer, cov in coverage.layers.items():
        reachable = [name for name in cov.hits if name not in cov.unreachable]
        if not reachable:
            continue
        for name in reachable:
            hit = int(cov.total(name) >= 1)
            data[f"{top}.{layer}.{name}"] = {
                "type": COCOTB_POINT, "size": 1, "coverage": hit, "cover_percentage": round(100.0 * hit, 2),
                "weight": 1, "at_least": 1, "bins:_hits": {"hit": cov.total(name)}}
        covered = sum(data[f"{top}.{layer}.{name}"]["coverage"] for name in reachable)
        data[f"{top}.{layer}"] = _cocotb_item(len(reachable), covered)
    size = sum(entry["size"] for key, entry in data.items() if key.count(".") == 1)
    covered = sum(entry["coverage"] for key, entry in data.items() if key.count(".") == 1)
    data[top] = _cocotb_item(size, covered)
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True)


def _cocotb_item(size: int, covered: int) -> dict:
    """A cocotb-coverage CoverItem (a group) entry; 100% when it has no bin."""
    return {"type": COCOTB_ITEM, "size": size, "coverage": covered,
            "cover_percentage": round(100.0 * covered / size, 2) if size else 100.0}


# ---------------------------------------------------------------------------------------- HTML
_ROW, _LABEL, _BAR, _COUNT = 20, 190, 420, 130
_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #bbb;padding:2px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-family:monospace}
tr.hole td{background:#fde0dc}
tr.unreachable td{color:#777;background:#f0f0f0}
code{font-family:monospace}
svg text{font-family:sans-serif;font-size:12px}"""


def html_report(coverage: Coverage, title: str, files=(), per_channel: bool = False) -> str:
    """One self-contained HTML page: the summary, then per layer an inline SVG bar chart (bar
    length = hits on a log scale, log(1 + hits) / log(1 + the most hits of any bin); holes red,
    unreachable bins grey with the reason as their tooltip) and a table of its bins (hits, runs,
    status; with ``per_channel``, the hits per channel).  No script, no external asset, no date."""
    esc = html.escape
    most = max((cov.total(name) for cov in coverage.layers.values() for name in cov.hits), default=0)
    reachable = coverage.reachable()
    hit = len(reachable) - len(coverage.holes())
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>refmodel coverage: {esc(title)}</title>", f"<style>\n{_STYLE}\n</style>", "</head>", "<body>",
             f"<h1>Functional coverage of {esc(title)}</h1>",
             f"<p>{hit} of {len(reachable)} reachable bins hit ({coverage.percent():.1f}%) over {coverage.runs} "
             f"run{'s' if coverage.runs != 1 else ''}. Bars: hits on a log scale; "
             '<span style="color:#c62828">red</span>: a hole (a reachable bin never hit); '
             '<span style="color:#888">grey</span>: unreachable (hover for why).</p>']
    if files:
        lines.append("<p>Files: " + ", ".join(f"<code>{esc(str(f))}</code>" for f in files) + "</p>")
    lines.append("<ul>" + "".join(f'<li><a href="#layer-{esc(layer)}">{esc(layer)}</a> ({esc(cov.kind)})</li>'
                                  for layer, cov in coverage.layers.items()) + "</ul>")
    for layer, cov in coverage.layers.items():
        lines.append(f'<h2 id="layer-{esc(layer)}">{esc(layer)} <small>({esc(cov.kind)})</small></h2>')
        lines.append(_svg(cov, most))
        header = "<tr><th>bin</th><th>hits</th><th>runs</th><th>status</th>" + \
                 ("<th>hits per channel</th>" if per_channel else "") + "</tr>"
        lines += ["<table>", header]
        for name, counts in cov.hits.items():
            total = int(counts.sum())
            if name in cov.unreachable:
                row, status = "unreachable", f"unreachable: {esc(cov.unreachable[name])}"
            else:
                row, status = ("hit", "hit") if total else ("hole", "<strong>HOLE</strong>")
            cells = (f'<td><code>{esc(name)}</code></td><td class="n">{total}</td>'
                     f'<td class="n">{cov.runs.get(name, 0)}/{coverage.runs}</td><td>{status}</td>')
            if per_channel:
                cells += f'<td class="n">{" ".join(str(int(c)) for c in counts)}</td>'
            lines.append(f'<tr class="{row}">{cells}</tr>')
        lines.append("</table>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def _svg(cov, most: int) -> str:
    """The bar chart of one layer's bins."""
    esc = html.escape
    width, height = _LABEL + _BAR + _COUNT, _ROW * max(len(cov.hits), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="hits per bin">']
    scale = math.log1p(most) if most else 1.0
    for i, (name, counts) in enumerate(cov.hits.items()):
        y, total = i * _ROW, int(counts.sum())
        parts.append(f'<text x="{_LABEL - 6}" y="{y + 14}" text-anchor="end">{esc(name)}</text>')
        if name in cov.unreachable:
            why = esc(cov.unreachable[name])
            parts.append(f'<rect x="{_LABEL}" y="{y + 3}" width="{_BAR}" height="{_ROW - 6}" fill="#d5d5d5">'
                         f"<title>{esc(name)}: unreachable: {why}</title></rect>")
            parts.append(f'<text x="{_LABEL + _BAR + 6}" y="{y + 14}" fill="#777">unreachable<title>{why}</title>'
                         "</text>")
        elif total == 0:
            parts.append(f'<rect x="{_LABEL}" y="{y + 3}" width="{_BAR}" height="{_ROW - 6}" fill="#fde0dc" '
                         f'stroke="#c62828"><title>{esc(name)}: HOLE (never hit)</title></rect>')
            parts.append(f'<text x="{_LABEL + _BAR + 6}" y="{y + 14}" fill="#c62828">HOLE</text>')
        else:
            bar = max(1.0, _BAR * math.log1p(total) / scale)
            parts.append(f'<rect x="{_LABEL}" y="{y + 3}" width="{bar:.1f}" height="{_ROW - 6}" fill="#2e7d32">'
                         f"<title>{esc(name)}: {total} hits</title></rect>")
            parts.append(f'<text x="{_LABEL + _BAR + 6}" y="{y + 14}">{total}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- files
def write_text(path, text: str, force: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (``refmodel.files.AtomicOutput``)."""
    with AtomicOutput(path, force=force) as out, open(out.tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)  # (an OSError becomes the OutputError naming the path, and the temporary goes)
