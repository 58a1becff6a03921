"""Community health extracts (CSDS data items, SystmOne reporting CSV) -> FHIR R4 transaction entries."""

from gateway.adapters.tabular import RowResult

from .csds import map_row, read_community_file

__all__ = ["RowResult", "map_row", "read_community_file"]
