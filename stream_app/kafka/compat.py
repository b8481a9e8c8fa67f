"""Fixes to how aiokafka (0.11-0.14) reads two Kafka answers; both lose or stall work unfixed.

1. **OffsetFetch v2+ group-level errors.** From v2 on, Kafka reports a group-level error (the
   coordinator is loading ``__consumer_offsets`` after a restart or a leader move, or is no longer
   the coordinator) in the response's top-level ``error_code`` with an *empty* partition list.
   aiokafka reads only the per-partition codes, so it answers "no committed offset". Our restore
   then took 0 as the committed input offset and skipped every changelog record (flows wiped), and
   aiokafka's own position reset sent the consumer back to ``auto_offset_reset``. Fixed by raising
   the top-level error where aiokafka reads the answer: ``fetch_committed_offsets`` then retries the
   retriable ones (load in progress, coordinator moved) as it does for per-partition codes.
2. **NETWORK_EXCEPTION (13) from transaction verification.** Kafka 3.6-3.7.0 verify transactional
   produce and TxnOffsetCommit requests with the transaction coordinator (KIP-890) and can answer
   NETWORK_EXCEPTION, a retriable error that aiokafka names ``StaleLeaderEpochCodeError`` (its
   pre-1.0 meaning) and treats as fatal: the TxnOffsetCommit handler raises it inside the sender
   task, which dies with "Unexpected error during batch delivery" (aiokafka issue 1004; Kafka fixed
   its side in 3.7.1, KAFKA-16386, by sending COORDINATOR_LOAD_IN_PROGRESS instead). Fixed by
   retrying it after the usual backoff, as the Java client and fixed brokers do.

:func:`install_fixes` is idempotent and is called by every component before it makes a client.
"""

from __future__ import annotations

from typing import Any

import aiokafka.errors as kafka_errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.sender import TxnOffsetCommitHandler

#: Kafka's API key of OffsetFetch.
OFFSET_FETCH_API_KEY = 9
#: Kafka's NETWORK_EXCEPTION (``StaleLeaderEpochCodeError`` in aiokafka).
NETWORK_EXCEPTION = 13

_installed = False


def offset_fetch_group_error(response: Any) -> type[kafka_errors.KafkaError] | None:
    """The group-level error of an OffsetFetch v2+ answer, or None (also for other answers)."""
    if getattr(response, "API_KEY", None) != OFFSET_FETCH_API_KEY:
        return None
    code = getattr(response, "error_code", 0)  # absent before v2
    if not code:
        return None
    error: type[kafka_errors.KafkaError] = kafka_errors.for_code(code)
    return error


def txn_offset_commit_needs_retry(response: Any) -> bool:
    """True when a TxnOffsetCommit answer carries NETWORK_EXCEPTION for any partition."""
    return any(code == NETWORK_EXCEPTION for _topic, parts in response.errors for _p, code in parts)


def install_fixes() -> None:
    """Install both fixes into aiokafka's classes (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True

    send_req = GroupCoordinator._send_req

    async def _send_req(self: GroupCoordinator, request: Any) -> Any:
        response = await send_req(self, request)
        error = offset_fetch_group_error(response)
        if error is not None:
            if error is kafka_errors.NotCoordinatorForGroupError:
                self.coordinator_dead()  # as aiokafka does for the per-partition code
            raise error()
        return response

    GroupCoordinator._send_req = _send_req

    handle = TxnOffsetCommitHandler.handle_response

    def handle_response(self: TxnOffsetCommitHandler, response: Any) -> float | None:
        if txn_offset_commit_needs_retry(response):
            backoff: float = self._default_backoff
            return backoff  # the whole request again: offsets already accepted are idempotent
        result: float | None = handle(self, response)
        return result

    TxnOffsetCommitHandler.handle_response = handle_response
    # The produce path retries what the error class calls retriable; NETWORK_EXCEPTION is.
    kafka_errors.StaleLeaderEpochCodeError.retriable = True
