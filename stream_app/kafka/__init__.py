"""The Kafka client room: what every aiokafka client of the project needs beyond aiokafka itself.

- :mod:`~stream_app.kafka.connect`: a client's start bounded to a few seconds, "no broker" as one
  clear :class:`~stream_app.errors.BrokerUnreachable` line (the CLI, the gateway, the processor).
- :mod:`~stream_app.kafka.metadata`: topic names and partition counts read the one way that is right
  on every broker.
- :mod:`~stream_app.kafka.compat`: fixes to aiokafka's reading of Kafka's protocol that would
  otherwise lose or stall work (a group-level OffsetFetch error read as "nothing committed", Kafka
  3.7's NETWORK_EXCEPTION on transactional offset commits), installed by :func:`install_fixes`.
- :mod:`~stream_app.kafka.offsets`: committed offsets that are either known or an error, never a
  silent "none".
- :mod:`~stream_app.kafka.partitioner`: the partition a messageId key lands on (murmur2, as the Java
  client), for readers that look up one message.
"""

from stream_app.kafka.compat import install_fixes
from stream_app.kafka.errors import CommittedOffsetUnknown, KafkaRoomError
from stream_app.kafka.offsets import committed_offsets

__all__ = ["CommittedOffsetUnknown", "KafkaRoomError", "committed_offsets", "install_fixes"]
