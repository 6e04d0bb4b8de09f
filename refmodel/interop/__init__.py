"""Interoperability: networks from the formats trained models travel in (NIR, ONNX), and back
(docs/interop.md).  Consumers of the layer interface and of ``refmodel.network``; their
packages (``nir``, ``onnx``, ``onnxruntime``) are the optional ``interop`` extra."""

import re


def identifier(text, prefix) -> str:
    """``text`` as a refmodel name: other characters than ASCII letters, digits and ``_`` made ``_``,
    ``prefix_`` in front when it does not start with a letter, at most 48 characters (a layer's
    derived names, such as ``<name>_sum``, stay within refmodel's 64)."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", str(text)).strip("_")
    return (name if re.match(r"[A-Za-z]", name) else f"{prefix}_{name}".rstrip("_"))[:48]
