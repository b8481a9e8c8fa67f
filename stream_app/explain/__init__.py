"""``stream-app explain``: replay one message's inputs through the processor's own step and say why.

Reads topics, never a running processor (DESIGN.md): :mod:`.scan` finds the message's records on its
partition of each topic (or :mod:`.export` reads them from a JSONL export), :mod:`.replay` steps its
inputs and timers through :class:`~stream_app.runtime.task.PartitionTask` with the rule behind each
decision (:mod:`stream_app.fallback.why`), :mod:`.compare` holds the replay against what was
published, and :mod:`.render` prints the timeline or JSON.
"""

from stream_app.explain.errors import ExplainError, ExportFileError, UnknownMessage
from stream_app.explain.run import DEFAULT_TOLERANCE_MS, Explanation, explain_file, explain_kafka
from stream_app.explain.scan import Bounds, Progress

__all__ = [
    "DEFAULT_TOLERANCE_MS",
    "Bounds",
    "ExplainError",
    "Explanation",
    "ExportFileError",
    "Progress",
    "UnknownMessage",
    "explain_file",
    "explain_kafka",
]
