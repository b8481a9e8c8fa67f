"""The gateway's own message ids -> our attempts: how a callback without ``customerMessageId`` is placed.

CONTRACT.md v1.1: a callback that names only the gateway's ``messageId`` (the READ event has no
``customerMessageId``) is resolved to our messageId and attempt through the ``providerMessageId``
published on ``delivery-status`` with that attempt; the lookup survives restarts; one that cannot
be resolved within ``STREAM_APP_ORPHAN_STATUS_SECONDS`` is dead-lettered with its reason.

Design:

* **Source of truth: the topic.** Every DeliveryStatus on ``delivery-status`` that names an
  ``attempt`` and a ``providerMessageId`` teaches the index that pair: the dispatcher's ACCEPTED
  (the id the send answer gave), and also the statuses the receiver itself publishes from callbacks
  carrying both ids. The second matters: the gateway's send answer echoes our customer id as its
  ``messageId`` (seed page 001), so its own UUID first appears on the DELIVERY callback, which
  carries both; the READ that follows names only the UUID.
* **Durable cache: a local RocksDB** under ``STREAM_APP_STATE_DIR`` holding the pairs and, in the
  same write batch, the next offset of each partition read. A restart resumes from those offsets
  instead of re-reading the topic; a fresh (or lost) state directory rebuilds from the topic,
  starting ``horizon`` seconds back (by timestamp). Each receiver instance reads every partition
  (no consumer group), so replicas behind a load balancer all know every id.
* **Held callbacks** wait in the same RocksDB (durable before the receiver answers 202): an
  unresolved callback is retried against the index until it resolves or is older than the orphan
  window, then dead-lettered. A body already held for the same id is not held again (the gateway
  repeats callbacks it believes failed). Bounded by ``max_held``; over it the receiver answers 503 so the
  gateway retries later rather than the disk filling.
* Pairs older than ``horizon`` (the max flow time plus the late-status window: no status of an
  older attempt can matter any more) are pruned.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from rocksdict import Options, Rdict, WriteBatch

from stream_app.contracts import Channel, DeliveryStatus
from stream_app.gateway.errors import GatewayConfigError

_PAIR, _HELD, _OFFSET = b"p", b"h", b"o"
_MS = struct.Struct(">q")
_SEQ = struct.Struct(">Q")
_PARTITION = struct.Struct(">I")


def _held_id(key: bytes) -> str:
    """The provider id of a held key: ``h<id>\0<8-byte sequence>``."""
    return key[1 : -(_SEQ.size + 1)].decode()


@dataclass(frozen=True, slots=True)
class Attempt:
    """Where a gateway id belongs: our messageId, attempt and channel."""

    message_id: str
    attempt: int
    channel: Channel


@dataclass(frozen=True, slots=True)
class Held:
    key: bytes
    provider_id: str
    at_ms: int
    body: bytes


class ProviderIndex:
    """providerMessageId -> :class:`Attempt`, the held callbacks and the read positions, on local disk."""

    def __init__(self, db: Rdict) -> None:
        self._db = db
        self._held: dict[str, int] = {}  # provider id -> held callbacks (small; loaded at open)
        self._seq = 0
        for key, _ in self._scan(_HELD):
            pid = _held_id(key)
            self._held[pid] = self._held.get(pid, 0) + 1
            self._seq = max(self._seq, _SEQ.unpack(key[-_SEQ.size :])[0])

    @classmethod
    def open(cls, path: Path) -> ProviderIndex:
        path.mkdir(parents=True, exist_ok=True)
        try:
            db = Rdict(str(path), Options(raw_mode=True))
        except Exception as exc:  # rocksdict raises a bare Exception for a held LOCK
            raise GatewayConfigError(
                f"cannot open the webhook's provider-id index at {path}: {exc}; is another webhook "
                "receiver using this STREAM_APP_STATE_DIR?"
            ) from None
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, bytes(value)

    # ------------------------------------------------------------------------------ learning
    def learn(self, batch: list[tuple[DeliveryStatus, int]], positions: dict[int, int]) -> int:
        """Record the pairs of ``batch`` ((status, record timestamp ms)) and the next offset of each
        partition, in one atomic write; returns how many pairs were learnt."""
        wb = WriteBatch(raw_mode=True)
        learnt = 0
        for status, at_ms in batch:
            if status.attempt is None or not status.provider_message_id:
                continue
            value = orjson.dumps([status.message_id, status.attempt, status.channel.value, at_ms])
            wb.put(_PAIR + status.provider_message_id.encode(), value)
            learnt += 1
        for partition, offset in positions.items():
            wb.put(_OFFSET + _PARTITION.pack(partition), _MS.pack(offset))
        self._db.write(wb)
        return learnt

    def positions(self) -> dict[int, int]:
        """The next offset to read of each partition, as last recorded."""
        return {_PARTITION.unpack(k[1:])[0]: _MS.unpack(v)[0] for k, v in self._scan(_OFFSET)}

    def lookup(self, provider_id: str) -> Attempt | None:
        raw = self._db.get(_PAIR + provider_id.encode())
        if raw is None:
            return None
        message_id, attempt, channel, _ = orjson.loads(raw)
        return Attempt(message_id, attempt, Channel(channel))

    def prune(self, older_than_ms: int) -> int:
        """Forget pairs learnt from records older than ``older_than_ms``; returns how many."""
        old = [k for k, v in self._scan(_PAIR) if orjson.loads(v)[3] < older_than_ms]
        for key in old:
            self._db.delete(key)
        return len(old)

    # ------------------------------------------------------------------------------ held callbacks
    @property
    def held_count(self) -> int:
        return sum(self._held.values())

    def hold(self, provider_id: str, body: bytes, at_ms: int) -> bool:
        """Keep a callback until its provider id is learnt (durable on return: the WAL has it).

        False, and nothing kept, when the same body is already held for that id: the gateway
        repeats a callback it believes failed, and a repeat must neither take a second place of
        the bound nor be published twice. (The few held per id are compared; the first keeps its
        time, so the orphan window runs from the first arrival.)
        """
        if self.holds(provider_id, body):
            return False
        self._seq += 1
        self._db.put(_HELD + provider_id.encode() + b"\0" + _SEQ.pack(self._seq), _MS.pack(at_ms) + body)
        self._held[provider_id] = self._held.get(provider_id, 0) + 1
        return True

    def holds(self, provider_id: str, body: bytes) -> bool:
        """Whether ``body`` is already held for ``provider_id``."""
        prefix = _HELD + provider_id.encode() + b"\0"
        return any(
            len(key) == len(prefix) + _SEQ.size and value[_MS.size :] == body
            for key, value in self._scan(prefix)
        )

    def held(self) -> list[Held]:
        """Every held callback, oldest first per provider id."""
        out = []
        for key, value in self._scan(_HELD):
            pid = _held_id(key)
            out.append(Held(key, pid, _MS.unpack_from(value)[0], bytes(value[_MS.size :])))
        return out

    def release(self, held: Held) -> None:
        self._db.delete(held.key)
        left = self._held.get(held.provider_id, 0) - 1
        if left > 0:
            self._held[held.provider_id] = left
        else:
            self._held.pop(held.provider_id, None)
