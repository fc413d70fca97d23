"""The compare report: per-run results -> ``losscli/compare/v2`` dict, markdown and flat rows.

Pure functions, no torch. Pieces: ``aggregate`` (summaries and raw paired tests per setting and
loss), ``decide`` (family-wise correction, minimum effect, outcomes, seeds needed), ``verdicts``
(the sentences), ``markdown`` (report.md as a list of section renderers), ``rows`` (flat rows),
``build`` (the report dict).
"""

from losscli.report.compare.build import DEFAULT_METRICS, PRIMARY_METRIC, SCHEMA, TABLE_METRICS, build_compare_report  # noqa: F401
from losscli.report.compare.markdown import SECTIONS, render_compare_markdown  # noqa: F401
from losscli.report.compare.rows import summary_rows  # noqa: F401

__all__ = ["DEFAULT_METRICS", "PRIMARY_METRIC", "SCHEMA", "SECTIONS", "TABLE_METRICS", "build_compare_report",
           "render_compare_markdown", "summary_rows"]
