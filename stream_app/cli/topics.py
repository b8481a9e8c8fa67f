"""``stream-app topics create|list|generate``: the topics of the catalogue (topics/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from stream_app.admin.topics import TopicAdmin
from stream_app.config import ENV, add_options, from_args
from stream_app.contracts import schema
from stream_app.errors import ConfigError
from stream_app.kafka.connect import quiet_client_logs

ORDER = 20

DESCRIPTION = """\
The topics of the contract (send-requests, delivery-status, retry-commands, outcomes, dead-letters,
the compacted channel-control table and the compacted <app-id>-flows-changelog and
<app-id>-dispatcher-sentlog), named with STREAM_APP_TOPIC_PREFIX.
See topics/README.md for keys, partitioning and retention.
"""

EPILOG = """\
examples:
  stream-app topics create                       every topic, 12 partitions (STREAM_APP_PARTITIONS)
  stream-app topics create --partitions 24 --topic-prefix prod.
  stream-app topics list                         what exists, with partition counts
  stream-app topics generate                     rewrite topics/ (schemas, AsyncAPI) from the code
"""

CREATE_DESCRIPTION = """\
Create every topic of the catalogue that does not exist yet, with its configs (the changelog
compacted, 7 or 30 days retention for the others). Safe to run again: existing topics are reported
and left alone. The co-partitioned topics must share one partition count: if some exist already with
a count, missing ones get that count, with a warning that says how to repair it when that is not the
count of --partitions (or STREAM_APP_PARTITIONS, default 12); if existing ones disagree, nothing is
created and the command fails (exit 2), saying which. Existing topics are never altered; one whose
cleanup.policy differs from the catalogue gets a warning. New topics with 3 or more replicas also get
min.insync.replicas=2 (all producers write with acks=all); with fewer, the broker's default applies.
"""

CREATE_EPILOG = """\
examples:
  stream-app topics create
  STREAM_APP_TOPIC_PREFIX=staging. stream-app topics create --partitions 6
  stream-app topics create --bootstrap-servers kafka-1:9092 --replication-factor 3

exit status: 0 done (created or already there), 2 error (broker unreachable, counts disagree, refused)
"""

LIST_EPILOG = """\
examples:
  stream-app topics list
  stream-app topics list --topic-prefix prod. --app-id fp-eu

exit status: 0 every topic exists with one co-partition count, 1 some are missing or disagree
"""

GENERATE_EPILOG = """\
examples:
  stream-app topics generate                     rewrite topics/ in this checkout
  stream-app topics generate --check             exit 1 when topics/ is out of date (CI)
  stream-app topics generate --out /tmp/topics   write somewhere else
"""

_SETTINGS = ("bootstrap_servers", "topic_prefix", "app_id")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "topics",
        help="create, list or regenerate the topics of the contract",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=lambda args: _help(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="create every missing topic (idempotent)",
        description=CREATE_DESCRIPTION,
        epilog=CREATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(create, *_SETTINGS, "partitions")
    create.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        metavar="N",
        help="replicas per partition, at least 1 (default: 3, or the number of brokers when fewer)",
    )
    create.set_defaults(func=run_create)

    listing = actions.add_parser(
        "list",
        help="show the topics with their partition counts",
        description="Show each topic of the catalogue: whether it exists, its partitions, key and records.",
        epilog=LIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(listing, *_SETTINGS)
    listing.set_defaults(func=run_list)

    generate = actions.add_parser(
        "generate",
        help="rewrite topics/ (catalogue, JSON Schemas, AsyncAPI) from the code",
        description=(
            "Regenerate topics/catalogue.json, topics/schemas/*.schema.json and topics/asyncapi.json from "
            "the contract models (same as `python -m stream_app.contracts.schema`)."
        ),
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument(
        "--out", type=Path, default=schema.DEFAULT_OUT, help="target folder (default: topics/)"
    )
    generate.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date")
    generate.set_defaults(func=run_generate)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_create(args: argparse.Namespace) -> int:
    settings = from_args(args)
    if args.replication_factor is not None and args.replication_factor < 1:
        # 0 used to fall back to the default without a word, a negative one reached the broker.
        raise ConfigError(f"--replication-factor: must be at least 1, got {args.replication_factor}")
    quiet_client_logs()
    # Only a count the user chose (option or environment) is worth a warning when topics differ.
    chosen = args.setting_partitions is not None or bool(os.environ.get(ENV["partitions"]))
    asked = settings.partitions if chosen else None

    async def go() -> int:
        async with TopicAdmin(settings) as admin:
            report = await admin.create(asked, replication_factor=args.replication_factor)
        for name, partitions in report.existing:
            print(f"exists   {name} ({partitions} partitions)")
        for name in report.created:
            print(
                f"created  {name} ({report.partitions} partitions, replication {report.replication_factor})"
            )
        print(
            f"{len(report.created)} created, {len(report.existing)} already there "
            f"on {settings.bootstrap_servers}",
            flush=True,
        )
        for warning in report.warnings:  # last, so they are what the terminal shows at the end
            print(f"stream-app: warning: {warning}", file=sys.stderr)
        return 0

    return asyncio.run(go())


def run_list(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()

    async def go() -> int:
        async with TopicAdmin(settings) as admin:
            states = await admin.states()
        width = max(len(st.name) for st in states)
        print(f"{'TOPIC':<{width}}  PARTITIONS  KEY        VALUES")
        for st in states:
            count = "missing" if st.partitions is None else str(st.partitions)
            values = ", ".join(st.spec.values) or (
                "original bytes" if st.spec.id == "dead_letters" else "state"
            )
            key = "messageId" if st.spec.key.startswith("messageId") else "original"
            print(f"{st.name:<{width}}  {count:<10}  {key:<9}  {values}")
        missing = [st.name for st in states if st.partitions is None]
        co = {st.partitions for st in states if st.spec.co_partitioned and st.partitions is not None}
        if missing:
            print(f"missing: {', '.join(missing)}; run `stream-app topics create`", file=sys.stderr)
        if len(co) > 1:
            print("co-partitioned topics disagree on the partition count", file=sys.stderr)
        return 1 if missing or len(co) > 1 else 0

    return asyncio.run(go())


def run_generate(args: argparse.Namespace) -> int:
    argv = ["--out", str(args.out)] + (["--check"] if args.check else [])
    try:
        return schema.main(argv)
    except OSError as exc:  # --out names a file, or a place this user cannot write
        raise ConfigError(f"--out {args.out}: cannot write there ({exc.strerror or exc})") from None
