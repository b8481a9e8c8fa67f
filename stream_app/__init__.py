"""stream_app: a Kafka-native processor that makes sure a message reaches a person on some channel.

Rooms (see the README's architecture section): ``contracts`` (wire records), ``fallback`` (the pure
decision core), ``store`` (durable keyed timer store), ``runtime`` (the Kafka shell), ``gateway``
(HTTP side), ``broker`` (the local Tansu broker), ``cli``/``config`` (the command).
"""

__version__ = "0.1.0"

from stream_app.compiled import check_fresh as _check_fresh

# A compiled hot-path module older than its source would run code that is no longer there.
_check_fresh()
