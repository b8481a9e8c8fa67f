"""Settings from the environment, with the same names as CLI options (CONTRACT.md, "Running it").

Precedence: a CLI option beats its environment variable, which beats the default. Every setting is
one field of :class:`Settings`; ``--bootstrap-servers`` is ``KAFKA_BOOTSTRAP_SERVERS``,
``--app-id`` is ``STREAM_APP_APP_ID`` and so on (see :data:`ENV`).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_app.contracts.timefmt import MAX_SECONDS
from stream_app.errors import ConfigError

if TYPE_CHECKING:
    import ssl

GUARANTEES = ("at_least_once", "exactly_once")
#: The largest TCP port.
MAX_PORT = 65_535
#: What Kafka takes in a topic name, and how long one may be.
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
MAX_TOPIC_NAME = 249


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
        return {"bootstrap_servers": self.bootstrap_servers, **security_kwargs(self.security)}


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

#: Prefixes of the Kafka security variables besides ``KAFKA_SECURITY_PROTOCOL`` (read or not).
SECURITY_PREFIXES: tuple[str, ...] = ("KAFKA_SASL_", "KAFKA_SSL_")

#: ``KAFKA_SECURITY_PROTOCOL`` values: Kafka's four, in any case (the Java client reads them so too).
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: ``KAFKA_SASL_MECHANISM`` values aiokafka speaks with nothing more than a user and a password.
#: GSSAPI needs the ``gssapi`` library and a Kerberos setup, OAUTHBEARER a token provider in code:
#: aiokafka accepts both names but then fails on an assertion or at the first connection.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SECURITY_VAR = {key: var for var, key in SECURITY_ENV.items()}


def _file_error(exc: OSError) -> str:
    """What went wrong with a file, in a few words (an ssl.SSLError is an OSError with no strerror)."""
    return str(exc.strerror or exc)


def _no_key_password() -> str:
    # Without a password an encrypted key makes OpenSSL prompt on the terminal: a service would
    # hang there. An empty answer fails at once instead, and the error says which setting to give.
    return ""


def security_kwargs(sec: Mapping[str, str]) -> dict[str, Any]:
    """aiokafka's keywords for the ``KAFKA_SECURITY_*``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_*`` settings.

    Raises :class:`ConfigError` for what aiokafka would refuse with a traceback (ValueError,
    AssertionError) or only at the first connection, and for a file the TLS context cannot load.
    """
    var = _SECURITY_VAR
    kwargs: dict[str, Any] = {}
    protocol = sec.get("security_protocol", "PLAINTEXT").strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"{var['security_protocol']}: must be one of {', '.join(SECURITY_PROTOCOLS)}, "
            f"got {sec['security_protocol']!r}"
        )
    if "security_protocol" in sec:
        kwargs["security_protocol"] = protocol  # aiokafka compares it as written: pass it upper case
    if protocol.startswith("SASL_"):
        # aiokafka's default mechanism is PLAIN: the user and password are needed without one too.
        mechanism = sec.get("sasl_mechanism", "PLAIN").strip().upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"{var['sasl_mechanism']}: must be one of {', '.join(SASL_MECHANISMS)}, got "
                f"{sec['sasl_mechanism']!r} (GSSAPI and OAUTHBEARER need libraries or code that "
                "stream-app does not set up)"
            )
        missing = [var[k] for k in ("sasl_plain_username", "sasl_plain_password") if not sec.get(k)]
        if missing:
            raise ConfigError(f"{var['sasl_mechanism']} {mechanism}: needs {' and '.join(missing)}")
        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_plain_username"] = sec["sasl_plain_username"]
        kwargs["sasl_plain_password"] = sec["sasl_plain_password"]
    # TLS needs a context even without any KAFKA_SSL_* file: aiokafka refuses SSL/SASL_SSL without
    # one ("ssl_context is mandatory"), and with no CA file the default context trusts the
    # system's CAs, which is what a broker with a publicly signed certificate needs (issue 9).
    if protocol.endswith("SSL") or any(k.startswith("ssl_") for k in sec):
        kwargs["ssl_context"] = _ssl_context(sec)
    return kwargs


def _ssl_context(sec: Mapping[str, str]) -> ssl.SSLContext:
    """The TLS context of the ``KAFKA_SSL_*`` files; a file it cannot load is a ConfigError naming it."""
    from aiokafka.helpers import create_ssl_context

    var = _SECURITY_VAR
    cafile, certfile, keyfile = (sec.get(k) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))
    if keyfile and not certfile:
        raise ConfigError(f"{var['ssl_keyfile']}: goes with {var['ssl_certfile']} (the client certificate)")
    try:
        ctx: ssl.SSLContext = create_ssl_context(cafile=cafile)
    except OSError as exc:  # ssl.SSLError included
        raise ConfigError(f"{var['ssl_cafile']} {cafile}: cannot load it: {_file_error(exc)}") from None
    if certfile:
        try:
            ctx.load_cert_chain(certfile, keyfile, sec.get("ssl_password") or _no_key_password)
        except OSError as exc:
            files = f"{var['ssl_certfile']} {certfile}"
            if keyfile:
                files += f" / {var['ssl_keyfile']} {keyfile}"
            hint = "" if sec.get("ssl_password") else f" (if the key is encrypted, set {var['ssl_password']})"
            raise ConfigError(f"{files}: cannot load it: {_file_error(exc)}{hint}") from None
    return ctx


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
    "metrics_port": "port (1-65535) of the /metrics and /healthz HTTP endpoint (0 turns it off)",
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


def _validate(s: Settings, given: Mapping[str, str] | None = None) -> Settings:
    """``s`` when every setting is in range, else a one-line ConfigError naming the setting as the
    user gave it: ``given`` maps a field set by an option to that option (``--partitions``)."""
    name = {**ENV, **(given or {})}
    if s.processing_guarantee not in GUARANTEES:
        raise ConfigError(
            f"{name['processing_guarantee']}: must be one of {', '.join(GUARANTEES)}, "
            f"got {s.processing_guarantee!r}"
        )
    if not s.bootstrap_servers.strip():
        raise ConfigError(f"{name['bootstrap_servers']}: must not be empty")
    for server in s.bootstrap_servers.split(","):
        if (problem := _server_problem(server.strip())) is not None:
            raise ConfigError(f"{name['bootstrap_servers']}: {server.strip()!r} {problem}")
    if not s.app_id.strip():
        raise ConfigError(f"{name['app_id']}: must not be empty")
    _check_topic_names(s, name)
    for bound in ("max_flow_seconds", "dedup_seconds"):
        if getattr(s, bound) <= 0:
            raise ConfigError(f"{name[bound]}: must be > 0")
    for bound in ("max_flow_seconds", "orphan_status_seconds", "late_status_seconds", "dedup_seconds"):
        if getattr(s, bound) > MAX_SECONDS:
            # A flow's end, a hold and the ended state's retention are deadlines in epoch ms, and a
            # flow's end is also a command's notAfter: ten years keeps both in range (timefmt).
            raise ConfigError(
                f"{name[bound]}: must be at most {MAX_SECONDS} (ten years), got {getattr(s, bound)}"
            )
    if s.max_request_bytes < 1024:
        raise ConfigError(f"{name['max_request_bytes']}: must be at least 1024")
    if not 1 <= s.partitions <= 10_000:
        raise ConfigError(f"{name['partitions']}: must be between 1 and 10000")
    if not port_in_range(s.metrics_port, 0):  # 0 turns the endpoint off
        raise ConfigError(f"{name['metrics_port']}: must be between 0 and {MAX_PORT}, got {s.metrics_port}")
    security_kwargs(s.security)  # built here to fail at start, with the setting named
    return s


def _check_topic_names(s: Settings, name: Mapping[str, str]) -> None:
    """The prefix and the app id make topic names: Kafka takes only ``[A-Za-z0-9._-]``, at most 249.

    Checked here, at start: a broker refuses such a name only when the topic is created (one topic at
    a time, the others made), and the local broker (Tansu) took ``bad prefixsend-requests`` as is.
    """
    for field_name, role in (
        ("topic_prefix", "it starts every topic name"),
        ("app_id", "it names the changelog and sent-log topics"),
    ):
        value = getattr(s, field_name)
        if not _TOPIC_CHARS.fullmatch(value):
            raise ConfigError(
                f"{name[field_name]}: {value!r} may hold only ASCII letters, digits, '.', '_' and '-' "
                f"({role})"
            )
    longest = max((getattr(s.topics, f.name) for f in fields(Topics)), key=len)
    if len(longest) > MAX_TOPIC_NAME:
        raise ConfigError(
            f"{name['topic_prefix']}: makes topic names longer than Kafka's {MAX_TOPIC_NAME} characters "
            f"({len(longest)}: {longest[:40]}...)"
        )


def _server_problem(server: str) -> str | None:
    """What is wrong with one ``host:port`` of KAFKA_BOOTSTRAP_SERVERS, or None.

    The forms aiokafka reads (``host``, ``host:port``, ``[ipv6]``, ``[ipv6]:port``, a bare IPv6
    literal; no port means Kafka's 9092): anything else made aiokafka raise a ValueError traceback
    when the first client was built.
    """
    if not server:
        return "is empty (a stray comma?)"
    if server.startswith("["):
        host, bracket, rest = server[1:].partition("]")
        if not bracket or not host:
            return "is not [IPv6]:port"
        if not rest:
            return None
        if not rest.startswith(":"):
            return "is not [IPv6]:port"
        port = rest[1:]
    elif ":" not in server:
        return None
    else:
        try:
            socket.inet_pton(socket.AF_INET6, server)
        except OSError:
            pass
        else:
            return None  # a bare IPv6 literal, on the default port
        host, _, port = server.rpartition(":")
        if not host:
            return "has no host"
    if port_in_range(port, 1):
        return None
    hint = " (an IPv6 address with a port goes in [])" if ":" in host and not server.startswith("[") else ""
    return f"has no port 1-{MAX_PORT}{hint}"


def port_in_range(port: str | int, lowest: int) -> bool:
    """Whether ``port`` is a TCP port number from ``lowest`` (0 or 1) to 65535.

    Checked where a port is read: a port out of range failed only when a socket was bound to it
    (OverflowError), long after the setting was read.
    """
    if isinstance(port, str):
        if not (port.isascii() and port.isdigit()):
            return False
        port = int(port)
    return lowest <= port <= MAX_PORT


def listen_port(text: str) -> int:
    """``--port`` of a service that listens (argparse ``type``): 0-65535, 0 for any free port.

    Out of range it is argparse's one-line usage error (exit 2) before anything starts; it was an
    OverflowError traceback from bind(), for the webhook receiver only after it had reached Kafka.
    """
    if not port_in_range(text.strip(), 0):
        raise argparse.ArgumentTypeError(f"must be a port number 0-{MAX_PORT}, got {text!r}")
    return int(text)


#: The schemes of every URL the services call (the gateway, the simulator's webhook).
URL_SCHEMES: tuple[str, ...] = ("http://", "https://")


def http_url(text: str) -> str:
    """``--gateway-url``, ``--webhook-url`` (argparse ``type``): an http(s) URL.

    An empty one was taken for "the default" in silence, and the simulator accepted ``nourl`` and
    then failed every callback, in its log only.
    """
    if not text.startswith(URL_SCHEMES):
        raise argparse.ArgumentTypeError(f"must start with http:// or https://, got {text!r}")
    return text


def check_state_dir(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse, in one line and before anything starts, a state directory that cannot hold the stores.

    Without it a path that is a file, or that cannot be created, failed only when the first store was
    opened: a traceback in the webhook, and in the processor after it had joined its group, with a
    hint to delete a "damaged" store that never existed.
    """
    name = "--state-dir" if getattr(args, "setting_state_dir", None) is not None else ENV["state_dir"]
    path = settings.state_dir
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{name} {path}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{name} {path}: not writable by this user")


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from environment variables alone."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in ENV.items():
        if var in env and env[var] != "":
            values[name] = _convert(name, env[var], var)
    security = {key: env[var] for var, key in SECURITY_ENV.items() if env.get(var)}
    _warn_unread_security(env)
    return _validate(Settings(**values, security=security))


def _warn_unread_security(env: Mapping[str, str]) -> None:
    """Say so when a ``KAFKA_SASL_*`` or ``KAFKA_SSL_*`` variable is set that no client reads.

    Such a variable is passed to no client: a user who set one to turn hostname checks off, expecting it
    to act must hear that it does not. A warning, not an error, as Kafka's own clients do for an
    unknown setting: the environment of a shared container may hold variables for other tools.
    """
    unread = sorted(var for var in env if var.startswith(SECURITY_PREFIXES) and var not in SECURITY_ENV)
    if unread:
        read = ", ".join(var for var in SECURITY_ENV if var != "KAFKA_SECURITY_PROTOCOL")
        logging.getLogger(__name__).warning(
            "%s: not passed to the Kafka client (stream_app reads %s)", ", ".join(unread), read
        )


def _shown(default: object) -> str:
    """A default as ``--help`` shows it: an empty one says so (it printed ``default )``)."""
    return str(default) if str(default) else "empty"


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
            help=f"{_HELP[f.name]} (env {ENV[f.name]}; default {_shown(getattr(Settings(), f.name))})",
        )


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, overridden by any ``--option`` given on the command line."""
    base = from_env(environ)
    overrides = {
        f.name: _convert(f.name, raw, "--" + f.name.replace("_", "-"))
        for f in fields(Settings)
        if (raw := getattr(args, f"setting_{f.name}", None)) is not None
    }
    given = {name: "--" + name.replace("_", "-") for name in overrides}
    return _validate(replace(base, **overrides), given) if overrides else base
