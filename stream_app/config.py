"""Settings from the environment, with the same names as CLI options (CONTRACT.md, "Running it").

Precedence: a CLI option beats its environment variable, which beats the default. Every setting is
one field of :class:`Settings`; ``--bootstrap-servers`` is ``KAFKA_BOOTSTRAP_SERVERS``,
``--app-id`` is ``STREAM_APP_APP_ID`` and so on (see :data:`ENV`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stream_app.contracts.timefmt import MAX_SECONDS
from stream_app.errors import ConfigError

GUARANTEES = ("at_least_once", "exactly_once")


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names with the optional ``STREAM_APP_TOPIC_PREFIX`` applied."""

    send_requests: str
    delivery_status: str
    retry_commands: str
    outcomes: str
    dead_letters: str
    changelog: str
    #: The dispatchers' sent-log, partition p belonging to partition p of retry-commands.
    sentlog: str
    #: v1.1: channel control (compacted, a global table every processor instance reads whole).
    channel_control: str

    @classmethod
    def of(cls, prefix: str = "", app_id: str = "fallback-processor") -> Topics:
        return cls(
            send_requests=f"{prefix}send-requests",
            delivery_status=f"{prefix}delivery-status",
            retry_commands=f"{prefix}retry-commands",
            outcomes=f"{prefix}outcomes",
            dead_letters=f"{prefix}dead-letters",
            changelog=f"{prefix}{app_id}-flows-changelog",
            sentlog=f"{prefix}{app_id}-dispatcher-sentlog",
            channel_control=f"{prefix}channel-control",
        )


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = ""
    app_id: str = "fallback-processor"
    state_dir: Path = Path(".stream-app/state")
    processing_guarantee: str = "at_least_once"
    max_flow_seconds: float = 72 * 3600.0
    orphan_status_seconds: float = 600.0
    late_status_seconds: float = 24 * 3600.0
    dedup_seconds: float = 24 * 3600.0
    metrics_port: int = 9464  # 9464: the port OpenTelemetry's Prometheus exporter uses by convention
    partitions: int = 12
    #: Largest input record the processor takes; bigger ones are dead-lettered. A request's contents
    #: and metadata travel whole into its changelog state (and one step's content into a command), so
    #: half of Kafka's default 1 MiB message.max.bytes leaves room for the state's own fields and the
    #: headers: no output of an accepted input can then be too large for the broker.
    max_request_bytes: int = 512 * 1024
    #: Static group membership (KIP-345): a stable name per instance (e.g. the pod name). A restarted
    #: instance with the same name gets its partitions back at once, with no rebalance, if it is back
    #: within the session timeout. Empty: dynamic membership.
    instance_id: str = ""
    # Kafka security pass-through (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*).
    security: Mapping[str, str] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics.of(self.topic_prefix, self.app_id)

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client of this process takes."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        sec = self.security
        if "security_protocol" in sec:
            kwargs["security_protocol"] = sec["security_protocol"]
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
            if key in sec:
                kwargs[key] = sec[key]
        # TLS needs a context even without any KAFKA_SSL_* file: aiokafka refuses SSL/SASL_SSL without
        # one ("ssl_context is mandatory"), and with no CA file the default context trusts the
        # system's CAs, which is what a broker with a publicly signed certificate needs (issue 9).
        tls = sec.get("security_protocol", "").upper() in ("SSL", "SASL_SSL")
        if tls or any(k.startswith("ssl_") for k in sec):
            import ssl

            from aiokafka.helpers import create_ssl_context

            ctx: ssl.SSLContext = create_ssl_context(
                cafile=sec.get("ssl_cafile"),
                certfile=sec.get("ssl_certfile"),
                keyfile=sec.get("ssl_keyfile"),
                password=sec.get("ssl_password"),
            )
            kwargs["ssl_context"] = ctx
        return kwargs


#: Settings field -> environment variable.
ENV: dict[str, str] = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "topic_prefix": "STREAM_APP_TOPIC_PREFIX",
    "app_id": "STREAM_APP_APP_ID",
    "state_dir": "STREAM_APP_STATE_DIR",
    "processing_guarantee": "STREAM_APP_PROCESSING_GUARANTEE",
    "max_flow_seconds": "STREAM_APP_MAX_FLOW_SECONDS",
    "orphan_status_seconds": "STREAM_APP_ORPHAN_STATUS_SECONDS",
    "late_status_seconds": "STREAM_APP_LATE_STATUS_SECONDS",
    "dedup_seconds": "STREAM_APP_DEDUP_SECONDS",
    "metrics_port": "STREAM_APP_METRICS_PORT",
    "partitions": "STREAM_APP_PARTITIONS",
    "max_request_bytes": "STREAM_APP_MAX_REQUEST_BYTES",
    "instance_id": "STREAM_APP_INSTANCE_ID",
}

#: Kafka security environment variables -> aiokafka keyword.
SECURITY_ENV: dict[str, str] = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_plain_username",
    "KAFKA_SASL_PASSWORD": "sasl_plain_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "KAFKA_SSL_PASSWORD": "ssl_password",
}

_HELP: dict[str, str] = {
    "bootstrap_servers": "Kafka bootstrap servers, host:port[,host:port]",
    "topic_prefix": "prefix of every topic name (e.g. 'prod.')",
    "app_id": "consumer group id and changelog topic name stem",
    "state_dir": "directory of the local state store",
    "processing_guarantee": "at_least_once, or exactly_once on a broker with Kafka transactions",
    "max_flow_seconds": "upper bound on a flow without ttl/expiresAt, seconds",
    "orphan_status_seconds": "how long a status is held waiting for its request, seconds",
    "late_status_seconds": "how long after its end a message still reports late statuses, seconds",
    "dedup_seconds": "how long a messageId is remembered to drop repeats, seconds",
    "metrics_port": "port of the /metrics and /healthz HTTP endpoint (0 turns it off)",
    "partitions": "partitions per topic for `topics create`",
    "max_request_bytes": "largest input record in bytes; larger ones go to dead-letters "
    "(keep it at most half the broker's message.max.bytes)",
    "instance_id": "static group membership: a name unique to this instance and stable across its "
    "restarts (e.g. the pod name); empty: dynamic membership",
}


def max_record_bytes(max_request_bytes: int) -> int:
    """The largest record the processor produces (its producers' ``max_request_size``).

    Room for the largest output an accepted input can cause (its state: about the input's size plus
    a few hundred bytes), and never below the 1 MiB default of aiokafka's ``max_request_size`` and of
    the brokers' ``message.max.bytes``.
    """
    return max(1024 * 1024, 2 * max_request_bytes)


def _convert(name: str, raw: str, source: str) -> Any:
    default = getattr(Settings(), name)
    try:
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            value: int | float = int(raw)
        elif isinstance(default, float):
            value = float(raw)
        else:
            return raw
    except ValueError:
        raise ConfigError(f"{source}: {raw!r} is not a number") from None
    if value < 0 or value != value:  # value != value: NaN
        raise ConfigError(f"{source}: must be >= 0, got {raw}")
    return value


def _validate(s: Settings) -> Settings:
    if s.processing_guarantee not in GUARANTEES:
        raise ConfigError(
            f"{ENV['processing_guarantee']}: must be one of {', '.join(GUARANTEES)}, "
            f"got {s.processing_guarantee!r}"
        )
    if not s.bootstrap_servers.strip():
        raise ConfigError(f"{ENV['bootstrap_servers']}: must not be empty")
    if not s.app_id.strip():
        raise ConfigError(f"{ENV['app_id']}: must not be empty")
    for name in ("max_flow_seconds", "dedup_seconds"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{ENV[name]}: must be > 0")
    for name in ("max_flow_seconds", "orphan_status_seconds", "late_status_seconds", "dedup_seconds"):
        if getattr(s, name) > MAX_SECONDS:
            # A flow's end, a hold and the ended state's retention are deadlines in epoch ms, and a
            # flow's end is also a command's notAfter: ten years keeps both in range (timefmt).
            raise ConfigError(
                f"{ENV[name]}: must be at most {MAX_SECONDS} (ten years), got {getattr(s, name)}"
            )
    if s.max_request_bytes < 1024:
        raise ConfigError(f"{ENV['max_request_bytes']}: must be at least 1024")
    if not 1 <= s.partitions <= 10_000:
        raise ConfigError(f"{ENV['partitions']}: must be between 1 and 10000")
    return s


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from environment variables alone."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in ENV.items():
        if var in env and env[var] != "":
            values[name] = _convert(name, env[var], var)
    security = {key: env[var] for var, key in SECURITY_ENV.items() if env.get(var)}
    return _validate(Settings(**values, security=security))


def add_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add ``--option`` flags for the named settings (all of them when none are named)."""
    for f in fields(Settings):
        if f.name == "security" or (names and f.name not in names):
            continue
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=f"setting_{f.name}",
            metavar=ENV[f.name],
            default=None,
            help=f"{_HELP[f.name]} (env {ENV[f.name]}; default {getattr(Settings(), f.name)})",
        )


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, overridden by any ``--option`` given on the command line."""
    base = from_env(environ)
    overrides = {
        f.name: _convert(f.name, raw, "--" + f.name.replace("_", "-"))
        for f in fields(Settings)
        if (raw := getattr(args, f"setting_{f.name}", None)) is not None
    }
    return _validate(replace(base, **overrides)) if overrides else base
