"""Column-spec engine shared by the tabular adapters (council CLD, community CSDS-style CSV).

`load_spec` reads a source layout from `mappings/`; `read_table` streams a file against it and
yields `ParsedRow`s (typed values, or the reasons a row is rejected); `RowResult` and the entry
helpers in `fhir` are the output contract both adapters give the pipeline.
"""

from .codes import CodeTable, CodeValue, normalise_code
from .fhir import PATIENT_REF, RowResult
from .reader import ERROR, WARNING, ParsedRow, file_errors, read_table
from .spec import Column, ColumnSpec, load_spec

__all__ = [
    "ERROR", "PATIENT_REF", "WARNING", "CodeTable", "CodeValue", "Column", "ColumnSpec", "ParsedRow",
    "RowResult", "file_errors", "load_spec", "normalise_code", "read_table",
]
