"""Chaos run at scale: N processor instances in one group, kill -9 under load, then a full audit.
Prints the report as one JSON line.

Why a bench and not only a test: the rebalance bugs of issue 14 show only with enough instances,
partitions, flows and kills (3 instances, 12 partitions, 6,000 flows and 8 kills lost about 1,500
flows on the local Tansu broker, while 2 instances and 5,000 flows hid it), which is too long for CI.
``tests/faults/runtime/test_chaos.py`` runs the same harness (``tests/support/chaos.py``) at CI size.

Counts that must be 0: lost, never_started, conflicting_*, unexpected_*, wrong_outcomes,
commands_after_outcome, early_timers, bad_not_dead_lettered. repeated_* may be > 0 at_least_once.

    python bench/chaos.py                                  # issue-14 size on a local Tansu broker
    python bench/chaos.py --flows 3000 --kills 6 --seed 7
    python bench/chaos.py --freeze-seconds 12              # and freeze the broker once, mid-publish
    python bench/chaos.py --bootstrap localhost:9092 --guarantee exactly_once
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

# tests.support is not an installed package: import it from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.chaos import ChaosConfig, run_chaos


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--flows", type=int, default=6000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--freeze-seconds", type=float, default=0.0, help="SIGSTOP the local broker once")
    parser.add_argument("--guarantee", choices=("at_least_once", "exactly_once"), default="at_least_once")
    parser.add_argument("--bad-records", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--publish-seconds", type=float, default=60.0, help="spread the flows over this")
    parser.add_argument(
        "--kill-window",
        type=float,
        default=None,
        help="kill moments fall in [1 s, this] (default publish + 10 s)",
    )
    parser.add_argument(
        "--kill-at-handover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each kill after the first strikes 0.2-2 s after the group handed partitions out again",
    )
    parser.add_argument(
        "--quiet-seconds", type=float, default=30.0, help="give up after this long with no output"
    )
    parser.add_argument("--deadline-seconds", type=float, default=900.0)
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start a local Tansu)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep state dirs and logs here")
    args = parser.parse_args()
    if args.freeze_seconds > 0 and args.bootstrap is not None:
        parser.error("--freeze-seconds needs the bench's own broker (no --bootstrap)")

    def config(work_dir: Path) -> ChaosConfig:
        return ChaosConfig(
            work_dir=work_dir,
            bootstrap=args.bootstrap,
            instances=args.instances,
            partitions=args.partitions,
            flows=args.flows,
            batches=args.batches,
            publish_seconds=args.publish_seconds,
            kills=args.kills,
            kill_window_seconds=args.kill_window,
            kill_at_handover=args.kill_at_handover,
            freeze_seconds=args.freeze_seconds,
            guarantee=args.guarantee,
            bad_records=args.bad_records,
            seed=args.seed,
            quiet_seconds=args.quiet_seconds,
            deadline_seconds=args.deadline_seconds,
        )

    if args.work_dir is not None:
        report = asyncio.run(run_chaos(config(args.work_dir)))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            report = asyncio.run(run_chaos(config(Path(tmp))))
    print(report.as_json(), flush=True)


if __name__ == "__main__":
    cli()
