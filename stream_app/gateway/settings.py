"""Settings of the gateway side, from the environment (the same style as :mod:`stream_app.config`).

The API key is read from ``STREAM_APP_GATEWAY_API_KEY`` only (never an option, so it stays out of
``ps`` and shell history) and is excluded from ``repr`` so it can never reach a log line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from stream_app.config import MAX_PORT, URL_SCHEMES, port_in_range
from stream_app.contracts import Channel
from stream_app.gateway.errors import GatewayConfigError

ENV = {
    "url": "STREAM_APP_GATEWAY_URL",
    "api_key": "STREAM_APP_GATEWAY_API_KEY",
    "timeout": "STREAM_APP_GATEWAY_TIMEOUT_SECONDS",
    "max_connections": "STREAM_APP_GATEWAY_MAX_CONNECTIONS",
    "concurrency": "STREAM_APP_DISPATCH_CONCURRENCY",
    "rate": "STREAM_APP_DISPATCH_RATE",
    "max_in_flight": "STREAM_APP_DISPATCH_MAX_IN_FLIGHT",
    "backoff_base": "STREAM_APP_DISPATCH_BACKOFF_BASE_SECONDS",
    "backoff_max": "STREAM_APP_DISPATCH_BACKOFF_MAX_SECONDS",
    "webhook_secret": "STREAM_APP_WEBHOOK_SECRET",
    "webhook_auth": "STREAM_APP_WEBHOOK_AUTH",
    "dispatcher_metrics_port": "STREAM_APP_DISPATCHER_METRICS_PORT",
    "poller_metrics_port": "STREAM_APP_POLLER_METRICS_PORT",
    "breaker_failure_ratio": "STREAM_APP_BREAKER_FAILURE_RATIO",
    "breaker_window": "STREAM_APP_BREAKER_WINDOW_SECONDS",
    "breaker_min_calls": "STREAM_APP_BREAKER_MIN_CALLS",
    "breaker_open": "STREAM_APP_BREAKER_OPEN_SECONDS",
    "breaker_max_open": "STREAM_APP_BREAKER_MAX_OPEN_SECONDS",
}


#: Default metrics ports of ``stream-app dispatcher`` and ``stream-app poller``: next to the
#: processor's 9464 and distinct from it, so all three run on one host with the defaults. One
#: variable per service (not the processor's STREAM_APP_METRICS_PORT), so one environment file shared
#: by every service cannot make two of them ask for the same port.
DISPATCHER_METRICS_PORT = 9465
POLLER_METRICS_PORT = 9466


#: How the webhook receiver authenticates callbacks (CONTRACT.md v1.1, "Operator commands").
WEBHOOK_AUTH_MODES = ("hmac", "token", "none")


def parse_per_channel(raw: str, source: str, default: float) -> dict[Channel, float]:
    """``"16"`` (every channel) or ``"WHATSAPP=8,SMS=32"`` (others keep ``default``) or a mix."""
    values = dict.fromkeys(Channel, default)
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, eq, number = part.partition("=")
        try:
            value = float(number if eq else name)
        except ValueError:
            raise GatewayConfigError(f"{source}: {part!r} is not NUMBER or CHANNEL=NUMBER") from None
        if not math.isfinite(value) or value < 0:
            raise GatewayConfigError(f"{source}: {part!r} must be >= 0 and finite")
        if not eq:
            values = dict.fromkeys(Channel, value)
            continue
        try:
            values[Channel(name.strip().upper())] = value
        except ValueError:
            raise GatewayConfigError(f"{source}: unknown channel {name!r}") from None
    return values


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The dispatcher's circuit breaker (:mod:`stream_app.gateway.breaker`), one per channel.

    The defaults weigh a false trip (a minute of messages skipping a working channel for the next
    step, usually a dearer SMS) against a missed outage (every message on the channel waiting out its
    ``fallbackAfter``, 2-4 hours for a promotion). A minute or two of detection is nothing next to
    those hours, so they lean towards never tripping on noise.
    """

    #: Trip when MORE than this share of the window's calls failed. 0.5: a healthy gateway fails well
    #: under 1% of calls, and a channel that fails every second call still gets messages through on
    #: the dispatcher's retries; past half, most sends are waiting on backoff. 1 turns tripping off.
    failure_ratio: float = 0.5
    #: The sliding window. 60 s: long enough to gather ``min_calls`` at a few sends a second, short
    #: enough that an outage is acted on within about a minute.
    window_seconds: float = 60.0
    #: No trip on fewer calls than this in the window. 20: at night, 3 timeouts out of 4 calls is a
    #: blip, not an outage; 20 calls over half failed (11+) is. A retry is a call, so an outage under
    #: light traffic still gets there: each command's backed-off retries count.
    min_calls: int = 20
    #: The first ``until``: how long a tripped channel stays closed before a probe. 60 s: the processor
    #: reopens the channel by itself at ``until``, so a false trip costs at most a minute of detours.
    open_seconds: float = 60.0
    #: Each failed probe doubles the time closed, up to this. 900 s: a long outage costs one probe
    #: every 15 minutes, and a recovered channel is back within 15 minutes at worst.
    max_open_seconds: float = 900.0

    def __post_init__(self) -> None:
        if not 0 < self.failure_ratio <= 1:
            raise GatewayConfigError(
                f"{ENV['breaker_failure_ratio']}: must be > 0 and at most 1, got {self.failure_ratio:g}"
            )
        if not self.window_seconds >= 1:
            raise GatewayConfigError(
                f"{ENV['breaker_window']}: must be at least 1, got {self.window_seconds:g}"
            )
        if self.min_calls < 1:
            raise GatewayConfigError(f"{ENV['breaker_min_calls']}: must be at least 1, got {self.min_calls}")
        if not self.open_seconds <= self.max_open_seconds:
            raise GatewayConfigError(
                f"{ENV['breaker_open']}: must be at most {ENV['breaker_max_open']} "
                f"({self.max_open_seconds:g}), got {self.open_seconds:g}"
            )


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    url: str = "http://127.0.0.1:19300"
    api_key: str = field(default="", repr=False)
    #: 10 s per HTTP call: the gateway answers a submit in well under a second; longer means trouble.
    timeout: float = 10.0
    #: Keep-alive pool size: above the sum of per-channel concurrency so no send waits for a socket.
    max_connections: int = 100
    #: In-flight sends per channel (16: enough to saturate a gateway's typical 50-100 req/s limit).
    concurrency: Mapping[Channel, float] = field(default_factory=lambda: dict.fromkeys(Channel, 16.0))
    #: Sends per second per channel; 0 means no limit of ours (the gateway's 429s still apply).
    rate: Mapping[Channel, float] = field(default_factory=lambda: dict.fromkeys(Channel, 0.0))
    #: Commands consumed but not finished, over all partitions; fetching pauses above it.
    max_in_flight: int = 1000
    #: Backoff: full jitter over base * 2**n seconds, capped at backoff_max (AWS's "full jitter").
    backoff_base: float = 0.2
    backoff_max: float = 30.0
    webhook_secret: bytes = field(default=b"", repr=False)
    #: ``hmac``, ``token``, ``none``, or "" for the default (``hmac`` when a secret is set).
    webhook_auth: str = ""
    #: Ports of the dispatcher's and the poller's /metrics + /healthz endpoint (0 turns it off).
    #: 0 here, so services run in-process (tests, the demo) bind no fixed port unless asked; the
    #: CLI's defaults come from :func:`gateway_from_env` (:data:`DISPATCHER_METRICS_PORT`, ...).
    dispatcher_metrics_port: int = 0
    poller_metrics_port: int = 0
    #: The dispatcher's per-channel circuit breaker (STREAM_APP_BREAKER_*).
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    def webhook_auth_mode(self) -> str:
        """The receiver's authentication mode; raises :class:`GatewayConfigError` when it cannot work.

        The Qlara docs mention no signature, so ``token`` (a secret in the callback URL or a header)
        and ``none`` (behind a proxy that authenticates) exist beside v1's HMAC; an unauthenticated
        receiver is never the default: ``none`` must be asked for.
        """
        mode = self.webhook_auth or "hmac"
        if mode != "none" and not self.webhook_secret:
            if self.webhook_auth:
                raise GatewayConfigError(
                    f"{ENV['webhook_secret']}: required with {ENV['webhook_auth']}={mode}"
                )
            raise GatewayConfigError(
                f"{ENV['webhook_secret']}: required (the shared secret the gateway signs callbacks with), "
                f"or {ENV['webhook_auth']}=token with a secret, or none behind an authenticating proxy"
            )
        return mode

    def send_url(self, channel: Channel) -> str:
        return f"{self.url.rstrip('/')}/api/message-server/{channel.value.lower()}/send"


def _num(env: Mapping[str, str], name: str, default: float, source: str | None = None) -> float:
    """The number in ``env``'s variable for field ``name``; an error names ``source`` (the variable
    unless a command-line option gave the value)."""
    raw = env.get(ENV[name], "")
    source = source or ENV[name]
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise GatewayConfigError(f"{source}: {raw!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise GatewayConfigError(f"{source}: must be > 0 and finite, got {raw}")
    return value


def whole(value: float, source: str) -> int:
    """``value`` as a count of at least 1 (connections, commands, calls); else a one-line error.

    ``int()`` would turn 0.5 into 0 (a pool or a limit that stalls everything) and raise
    OverflowError on ``inf``: neither may get past the settings.
    """
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise GatewayConfigError(f"{source}: must be a whole number of at least 1, got {value:g}")
    return int(value)


def _count(env: Mapping[str, str], name: str, default: int, source: str | None = None) -> int:
    source = source or ENV[name]
    return whole(_num(env, name, default, source), source)


def _port(env: Mapping[str, str], name: str, default: int, source: str | None = None) -> int:
    raw = env.get(ENV[name], "").strip()
    if raw == "":
        return default
    if not port_in_range(raw, 0):  # str.isdigit() took '²', which int() then refused
        raise GatewayConfigError(
            f"{source or ENV[name]}: must be a port number 0-{MAX_PORT} (0 turns it off), got {raw!r}"
        )
    return int(raw)


def _breaker(env: Mapping[str, str]) -> BreakerConfig:
    base = BreakerConfig()
    return BreakerConfig(
        failure_ratio=_num(env, "breaker_failure_ratio", base.failure_ratio),
        window_seconds=_num(env, "breaker_window", base.window_seconds),
        min_calls=_count(env, "breaker_min_calls", base.min_calls),
        open_seconds=_num(env, "breaker_open", base.open_seconds),
        max_open_seconds=_num(env, "breaker_max_open", base.max_open_seconds),
    )


def _auth_mode(raw: str) -> str:
    mode = raw.strip().lower()
    if mode and mode not in WEBHOOK_AUTH_MODES:
        raise GatewayConfigError(
            f"{ENV['webhook_auth']}: must be one of {', '.join(WEBHOOK_AUTH_MODES)}, got {raw!r}"
        )
    return mode


def gateway_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    given: Mapping[str, str] | None = None,
    **overrides: object,
) -> GatewaySettings:
    """Gateway settings from the environment; keyword ``overrides`` (CLI options) win when not None.

    ``given`` maps a field whose value in ``environ`` came from a command-line option (the CLI puts an
    option's text under the field's variable) to that option, e.g. ``{"concurrency":
    "--concurrency"}``: an error about it names the option the user typed, not a variable they never
    set. A value from the environment is still named by its variable.
    """
    env = os.environ if environ is None else environ
    name = {**ENV, **(given or {})}
    base = GatewaySettings()
    url = env.get(ENV["url"]) or base.url
    if not url.startswith(URL_SCHEMES):
        raise GatewayConfigError(f"{name['url']}: must start with http:// or https://, got {url!r}")
    s = GatewaySettings(
        url=url,
        api_key=env.get(ENV["api_key"], ""),
        timeout=_num(env, "timeout", base.timeout, name["timeout"]),
        max_connections=_count(env, "max_connections", base.max_connections, name["max_connections"]),
        concurrency=parse_per_channel(env.get(ENV["concurrency"], ""), name["concurrency"], 16.0),
        rate=parse_per_channel(env.get(ENV["rate"], ""), name["rate"], 0.0),
        max_in_flight=_count(env, "max_in_flight", base.max_in_flight, name["max_in_flight"]),
        backoff_base=_num(env, "backoff_base", base.backoff_base, name["backoff_base"]),
        backoff_max=_num(env, "backoff_max", base.backoff_max, name["backoff_max"]),
        webhook_secret=env.get(ENV["webhook_secret"], "").encode(),
        webhook_auth=_auth_mode(env.get(ENV["webhook_auth"], "")),
        dispatcher_metrics_port=_port(
            env, "dispatcher_metrics_port", DISPATCHER_METRICS_PORT, name["dispatcher_metrics_port"]
        ),
        poller_metrics_port=_port(
            env, "poller_metrics_port", POLLER_METRICS_PORT, name["poller_metrics_port"]
        ),
        breaker=_breaker(env),
    )
    values = {k: v for k, v in overrides.items() if v is not None}
    if values:
        from dataclasses import replace

        s = replace(s, **values)  # type: ignore[arg-type]
    if any(c < 1 for c in s.concurrency.values()):
        raise GatewayConfigError(f"{name['concurrency']}: every channel needs at least 1")
    for c in s.concurrency.values():
        whole(c, name["concurrency"])
    whole(s.max_connections, name["max_connections"])  # again after the overrides (CLI options)
    whole(s.max_in_flight, name["max_in_flight"])
    return s


def gateway_from_options(
    options: Mapping[str, tuple[str, str | None]], environ: Mapping[str, str] | None = None
) -> GatewaySettings:
    """Gateway settings from the environment and the options given on the command line.

    ``options`` maps a field to ``(option, text)``, e.g. ``{"rate": ("--rate", args.rate)}``; a text
    that is None (the option was not given) leaves the field to its variable. A given option's text
    is read the way its variable's would be, and an error about it names the option.
    """
    env = dict(os.environ if environ is None else environ)
    given = {field: option for field, (option, text) in options.items() if text is not None}
    env.update({ENV[field]: text for field, (_, text) in options.items() if text is not None})
    return gateway_from_env(env, given=given)
