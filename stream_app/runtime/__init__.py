"""The stream runtime: aiokafka around the pure decision core, with a durable keyed timer store.

``run_processor(settings, clock=..., stop=..., ready=...)`` is the entry point of
``stream-app processor``; see :mod:`stream_app.runtime.processor` for the loop and commit protocol.
"""

from stream_app.runtime.errors import (
    MissingTopics,
    NotCoPartitioned,
    PartitionMismatch,
    ProcessorError,
    TransactionsUnsupported,
)
from stream_app.runtime.processor import Processor, run_processor, wall_clock

__all__ = [
    "MissingTopics",
    "NotCoPartitioned",
    "PartitionMismatch",
    "Processor",
    "ProcessorError",
    "TransactionsUnsupported",
    "run_processor",
    "wall_clock",
]
