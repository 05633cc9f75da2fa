"""Self-contained uncertainty report of a fit: HTML (figures embedded) and Markdown.

``summaries`` (tables and sentences, usable from notebooks) -> ``figures`` ->
``build`` (answer first: headline, the target on its family's curves, the
predictions; evidence below) -> ``render`` (Jinja2 templates).
"""

from bayescale.reporting.build import build_report, write_report
from bayescale.reporting.summaries import Status, status

__all__ = ["Status", "build_report", "status", "write_report"]
