"""Interoperability: networks from the formats trained models travel in (NIR, ONNX), and back
(docs/interop.md).  Consumers of the layer interface and of ``refmodel.network``; their
packages (``nir``, ``onnx``, ``onnxruntime``) are the optional ``interop`` extra."""
