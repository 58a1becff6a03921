"""Council adult social care extracts (Client Level Data layout) -> FHIR R4 transaction entries."""

from gateway.adapters.tabular import RowResult

from .cld import map_row, read_council_file

__all__ = ["RowResult", "map_row", "read_council_file"]
