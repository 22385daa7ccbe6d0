"""Data: the internal record, loaders and validation (docs/design.md; formats: docs/training.md)."""

from lwdpo_edge.data.loaders import DEFAULT_DATA, iter_rows, load_records, parse_row, save_records
from lwdpo_edge.data.pointwise import PointwiseColumns, load_pointwise, pointwise_columns
from lwdpo_edge.data.schema import DataError, ListwiseRecord, Response, objectives_of
from lwdpo_edge.data.validate import ValidationReport, render_report, validate_path

__all__ = [
    "DEFAULT_DATA",
    "DataError",
    "ListwiseRecord",
    "PointwiseColumns",
    "Response",
    "ValidationReport",
    "iter_rows",
    "load_pointwise",
    "load_records",
    "objectives_of",
    "parse_row",
    "pointwise_columns",
    "render_report",
    "save_records",
    "validate_path",
]
