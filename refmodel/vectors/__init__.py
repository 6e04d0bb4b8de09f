"""HDF5 test-vector files (format version 1, docs/vectors.md): write, read, compare, export."""

from refmodel.vectors.compare import Comparison, Mismatch, compare_files, first_mismatch
from refmodel.vectors.hexport import export_hex
from refmodel.vectors.reader import DatasetInfo, LayerInfo, VectorFile
from refmodel.vectors.schema import FORMAT_NAME, FORMAT_VERSION, VectorFileError
from refmodel.vectors.svheader import export_sv
from refmodel.vectors.writer import VectorWriter, reseal

__all__ = ["VectorWriter", "reseal", "VectorFile", "VectorFileError", "DatasetInfo", "LayerInfo", "compare_files",
           "first_mismatch", "Comparison", "Mismatch", "export_hex", "export_sv", "FORMAT_NAME", "FORMAT_VERSION"]
