"""``stream-app report``: delivery analytics over ``outcomes``, with bounded memory.

Reads the topic (or a JSONL export) record by record (:mod:`sources`), decodes each with orjson into
a small row (:mod:`read`), counts it (:mod:`aggregate`, with the what-if of :mod:`whatif` and the
sketches of :mod:`sketch`), and renders the one resulting dict as a table, CSV (:mod:`render`), JSON
or a self-contained HTML page with charts (:mod:`html`). Method and figures: docs/report.md.
"""

from stream_app.report.aggregate import Aggregator, Filters
from stream_app.report.errors import BadRecord, ReportError
from stream_app.report.read import parse

__all__ = ["Aggregator", "BadRecord", "Filters", "ReportError", "parse"]
