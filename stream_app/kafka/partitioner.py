"""Which partition a key lands on: the one rule every producer of the contract follows.

CONTRACT.md keys every record by its messageId and partitions it like the Java client's default
partitioner, ``toPositive(murmur2(key)) % partitions`` (aiokafka's default too). Readers that look up
one message (``outcomes --message-id``, ``explain``) read only that partition, by this rule.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner (and aiokafka's) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions
