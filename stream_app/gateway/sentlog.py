"""The dispatcher's durable record of the commandIds it has sent: never the same commandId twice.

Choice: a local RocksDB (rocksdict) under ``STREAM_APP_STATE_DIR``, not a compacted topic. The
record must be durable BEFORE each HTTP call; a local write (WAL append, tens of microseconds, no
broker round trip) keeps that off the send's latency and works while the broker is slow or away,
and a restart needs no replay of a topic to know what was sent. The cost: the record lives with the
state directory, so run one dispatcher per state directory on a persistent volume (as the processor
does), and a dispatcher moved to a new volume starts with an empty record (documented in the README).

Each commandId goes through three states, written in this order:

* ``SENDING``: written before every call. Found at start, the call may or may not have reached the
  gateway, so the dispatcher asks the gateway's status endpoint instead of resending.
* ``RESULT``: the answer is known; the value holds the DeliveryStatus bytes to publish. Found at
  start, those bytes are published again (the crash came between the answer and its publication).
* ``DONE``: the status is on ``delivery-status``; a repeat command is dropped.

The WAL is written on every put, so a killed process (``kill -9``) loses nothing; only a machine
crash can lose the last writes, unless ``sync`` is set (an fsync per write, a few ms on most disks).
Entries older than the dedup window are pruned (the processor repeats a command only while
replaying after its own crash, minutes at most).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from rocksdict import Options, Rdict, WriteOptions

from stream_app.gateway.errors import GatewayConfigError

_HEADER = struct.Struct(">cq")  # state byte + epoch ms


class SendState(Enum):
    SENDING = b"S"
    RESULT = b"R"
    DONE = b"D"


@dataclass(frozen=True, slots=True)
class Entry:
    state: SendState
    at_ms: int
    payload: bytes


class SentLog:
    """commandId -> :class:`Entry`, on local disk."""

    def __init__(self, db: Rdict, sync: bool) -> None:
        self._db = db
        self._write = WriteOptions()
        self._write.sync = sync

    @classmethod
    def open(cls, path: Path, *, sync: bool = False) -> SentLog:
        path.mkdir(parents=True, exist_ok=True)
        try:
            db = Rdict(str(path), Options(raw_mode=True))
        except Exception as exc:  # rocksdict raises a bare Exception for a held LOCK
            raise GatewayConfigError(
                f"cannot open the dispatcher's sent-log at {path}: {exc}; is another dispatcher "
                "using this STREAM_APP_STATE_DIR?"
            ) from None
        return cls(db, sync)

    def get(self, command_id: str) -> Entry | None:
        raw = self._db.get(command_id.encode())
        if raw is None:
            return None
        state, at_ms = _HEADER.unpack_from(raw)
        return Entry(SendState(state), at_ms, bytes(raw[_HEADER.size :]))

    def put(self, command_id: str, state: SendState, at_ms: int, payload: bytes = b"") -> None:
        self._db.put(command_id.encode(), _HEADER.pack(state.value, at_ms) + payload, self._write)

    def entries(self) -> list[tuple[str, Entry]]:
        """Every entry (tests and the start-up scan; the record holds one dedup window)."""
        out = []
        for key, raw in self._db.items():
            state, at_ms = _HEADER.unpack_from(raw)
            name = key.decode() if isinstance(key, bytes) else str(key)
            out.append((name, Entry(SendState(state), at_ms, bytes(raw[_HEADER.size :]))))
        return out

    def prune(self, older_than_ms: int) -> int:
        """Forget DONE entries written before ``older_than_ms``; returns how many."""
        old = [
            key
            for key, raw in self._db.items()
            if raw[:1] == SendState.DONE.value and _HEADER.unpack_from(raw)[1] < older_than_ms
        ]
        for key in old:
            self._db.delete(key, self._write)
        return len(old)

    def close(self) -> None:
        self._db.close()
