"""Settings: environment, options over environment, and a one-line error for every bad value."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from stream_app.config import Settings, Topics, add_options, from_args, from_env
from stream_app.errors import ConfigError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser)
    return parser.parse_args(list(argv))


def test_defaults_follow_the_contract() -> None:
    s = from_env({})
    assert s.bootstrap_servers == "localhost:9092"
    assert s.app_id == "fallback-processor"
    assert s.max_flow_seconds == 72 * 3600
    assert s.orphan_status_seconds == 600
    assert s.late_status_seconds == s.dedup_seconds == 24 * 3600
    assert s.processing_guarantee == "at_least_once"
    assert s.max_request_bytes == 512 * 1024


def test_environment_names_of_contract_md() -> None:
    s = from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "STREAM_APP_TOPIC_PREFIX": "prod.",
            "STREAM_APP_APP_ID": "fp",
            "STREAM_APP_STATE_DIR": "/var/lib/sa",
            "STREAM_APP_MAX_FLOW_SECONDS": "3600",
            "STREAM_APP_ORPHAN_STATUS_SECONDS": "30.5",
            "STREAM_APP_PROCESSING_GUARANTEE": "exactly_once",
            "STREAM_APP_MAX_REQUEST_BYTES": "2048",
            "STREAM_APP_INSTANCE_ID": "processor-0",
        }
    )
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.state_dir == Path("/var/lib/sa")
    assert s.max_flow_seconds == 3600.0
    assert s.orphan_status_seconds == 30.5
    assert s.processing_guarantee == "exactly_once"
    assert s.max_request_bytes == 2048
    assert s.instance_id == "processor-0"
    assert s.topics == Topics(
        send_requests="prod.send-requests",
        delivery_status="prod.delivery-status",
        retry_commands="prod.retry-commands",
        outcomes="prod.outcomes",
        dead_letters="prod.dead-letters",
        changelog="prod.fp-flows-changelog",
        sentlog="prod.fp-dispatcher-sentlog",
        channel_control="prod.channel-control",
    )


def test_an_option_beats_its_environment_variable() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "from-env:9092", "STREAM_APP_APP_ID": "env-app"}
    s = from_args(_args("--bootstrap-servers", "from-cli:9092"), env)
    assert s.bootstrap_servers == "from-cli:9092"
    assert s.app_id == "env-app"


def test_security_settings_pass_through_to_the_client() -> None:
    s = from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "p",
        }
    )
    kw = s.kafka_client_kwargs()
    assert kw["security_protocol"] == "SASL_PLAINTEXT"
    assert kw["sasl_mechanism"] == "PLAIN"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("u", "p")
    assert "ssl_context" not in kw


def test_a_security_variable_no_client_reads_is_warned_about_regression(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: CONTRACT.md says KAFKA_SASL_* and KAFKA_SSL_* pass through to the client, but
    only the eight named in SECURITY_ENV are read; any other was ignored without a word."""
    caplog.set_level(logging.WARNING, logger="stream_app.config")
    env = {"KAFKA_SSL_CHECK_HOSTNAME": "false", "KAFKA_SASL_JAAS_CONFIG": "x", "KAFKA_SSL_CAFILE": ""}
    from_env(env)
    warned = [r.getMessage() for r in caplog.records if r.name == "stream_app.config"]
    assert len(warned) == 1
    assert warned[0].startswith(
        "KAFKA_SASL_JAAS_CONFIG, KAFKA_SSL_CHECK_HOSTNAME: not passed to the Kafka client"
    )
    assert "KAFKA_SSL_CAFILE" in warned[0]  # the ones it reads are named


def test_only_the_security_variables_read_are_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app.config")
    from_env({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_SSL_CAFILE": "", "KAFKA_CLIENT_ID": "x"})
    assert not [r for r in caplog.records if r.name == "stream_app.config"]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"STREAM_APP_MAX_FLOW_SECONDS": "soon"}, "STREAM_APP_MAX_FLOW_SECONDS: 'soon' is not a number"),
        ({"STREAM_APP_DEDUP_SECONDS": "-5"}, "STREAM_APP_DEDUP_SECONDS: must be >= 0, got -5"),
        ({"STREAM_APP_DEDUP_SECONDS": "nan"}, "STREAM_APP_DEDUP_SECONDS: must be >= 0, got nan"),
        ({"STREAM_APP_MAX_FLOW_SECONDS": "0"}, "STREAM_APP_MAX_FLOW_SECONDS: must be > 0"),
        # Past ten years a flow's end could not be written back as a time (notAfter): regression.
        (
            {"STREAM_APP_MAX_FLOW_SECONDS": "1e12"},
            "STREAM_APP_MAX_FLOW_SECONDS: must be at most 315360000 (ten years), got 1000000000000.0",
        ),
        ({"STREAM_APP_LATE_STATUS_SECONDS": "4e8"}, "STREAM_APP_LATE_STATUS_SECONDS: must be at most"),
        ({"STREAM_APP_PROCESSING_GUARANTEE": "maybe"}, "must be one of at_least_once, exactly_once"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "  "}, "KAFKA_BOOTSTRAP_SERVERS: must not be empty"),
        ({"STREAM_APP_APP_ID": " "}, "STREAM_APP_APP_ID: must not be empty"),
        ({"STREAM_APP_PARTITIONS": "0"}, "STREAM_APP_PARTITIONS: must be between 1 and 10000"),
        ({"STREAM_APP_METRICS_PORT": "9.5"}, "STREAM_APP_METRICS_PORT: '9.5' is not a number"),
        ({"STREAM_APP_MAX_REQUEST_BYTES": "100"}, "STREAM_APP_MAX_REQUEST_BYTES: must be at least 1024"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_setting(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(env)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_option_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--partitions: 'many' is not a number"):
        from_args(_args("--partitions", "many"), {})


def test_empty_environment_values_mean_unset() -> None:
    assert from_env({"STREAM_APP_APP_ID": ""}).app_id == Settings().app_id


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
async def test_tls_without_ssl_files_trusts_the_system_cas(protocol: str) -> None:
    """Regression (issue 9): SSL with no KAFKA_SSL_* file gave aiokafka's ``ssl_context is mandatory``
    traceback; a broker with a publicly trusted certificate (a managed Kafka) needs no file at all."""
    import ssl

    from aiokafka import AIOKafkaConsumer

    env = {"KAFKA_SECURITY_PROTOCOL": protocol}
    if protocol == "SASL_SSL":
        env |= {"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    kw = from_env(env).kafka_client_kwargs()
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    consumer = AIOKafkaConsumer(**kw)  # raised "ssl_context is mandatory if security_protocol=='SSL'"
    await consumer.stop()


def test_plaintext_gets_no_ssl_context() -> None:
    assert "ssl_context" not in from_env({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}).kafka_client_kwargs()


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"KAFKA_SSL_CAFILE": "/nonexistent"}, "KAFKA_SSL_CAFILE /nonexistent: cannot load it: No such file"),
        ({"KAFKA_SSL_CERTFILE": "/nonexistent"}, "KAFKA_SSL_CERTFILE /nonexistent: cannot load it"),
        ({"KAFKA_SSL_KEYFILE": "/tmp/k.pem"}, "KAFKA_SSL_KEYFILE: goes with KAFKA_SSL_CERTFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "tls"}, "KAFKA_SECURITY_PROTOCOL: must be one of PLAINTEXT, SSL, "),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"},
            "KAFKA_SASL_MECHANISM PLAIN: needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (  # no mechanism: aiokafka's default PLAIN, which needs them too
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "KAFKA_SASL_MECHANISM PLAIN: needs KAFKA_SASL_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM: must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI' "
            "(GSSAPI and OAUTHBEARER need",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "got 'OAUTHBEARER'",
        ),
    ],
)
def test_bad_security_settings_were_tracebacks_from_aiokafka_regression(
    env: dict[str, str], reason: str
) -> None:
    """A missing CA file was a FileNotFoundError, PLAIN without a user a ValueError and GSSAPI an
    AssertionError, each raised when the first client was built; now a one-line error at start."""
    with pytest.raises(ConfigError) as info:
        from_env(env)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


async def test_lower_case_security_protocol_was_passed_as_written_regression() -> None:
    """``ssl`` chose TLS (the check upper-cased it) but reached aiokafka as written: a ValueError."""
    from aiokafka import AIOKafkaConsumer

    kw = from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "p",
        }
    ).kafka_client_kwargs()
    assert (kw["security_protocol"], kw["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    consumer = AIOKafkaConsumer(**kw)  # raised "`security_protocol` should be SSL or PLAINTEXT"
    await consumer.stop()


@pytest.mark.parametrize(
    ("servers", "reason"),
    [
        ("localhost:abc", "'localhost:abc' has no port 1-65535"),
        ("[::1", "'[::1' is not [IPv6]:port"),
        ("[::1]:x", "'[::1]:x' has no port 1-65535"),
        ("k1:9092,k2:70000", "'k2:70000' has no port 1-65535"),
        ("k1:0", "'k1:0' has no port 1-65535"),
        ("k1:9092,", "'' is empty"),
        (":9092", "':9092' has no host"),
        ("fe80::1%eth0:x", "(an IPv6 address with a port goes in [])"),
    ],
)
def test_bad_bootstrap_server_was_a_value_error_from_aiokafka_regression(servers: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"KAFKA_BOOTSTRAP_SERVERS": servers})
    assert str(info.value).startswith("KAFKA_BOOTSTRAP_SERVERS: ")
    assert reason in str(info.value)


@pytest.mark.parametrize("servers", ["k1", "k1:1,k2:65535", "[::1]", "[::1]:9092", "::1", " k1:9092 , k2 "])
def test_bootstrap_servers_aiokafka_reads_are_accepted(servers: str) -> None:
    """No port is Kafka's 9092 for aiokafka too, and a bare IPv6 literal is an address on it."""
    assert from_env({"KAFKA_BOOTSTRAP_SERVERS": servers}).bootstrap_servers == servers


def test_metrics_port_over_65535_overflowed_at_bind_regression() -> None:
    with pytest.raises(ConfigError, match="STREAM_APP_METRICS_PORT: must be between 0 and 65535, got 70000"):
        from_env({"STREAM_APP_METRICS_PORT": "70000"})
    with pytest.raises(ConfigError, match="--metrics-port: must be between 0 and 65535, got 65536"):
        from_args(_args("--metrics-port", "65536"), {})
    assert from_env({"STREAM_APP_METRICS_PORT": "0"}).metrics_port == 0  # documented: off
