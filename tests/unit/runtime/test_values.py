"""The runtime's per-record values write their ``__init__`` out (compiled as C): it must set every field."""

from __future__ import annotations

import dataclasses

import pytest

from stream_app.runtime.checkpoint import Change
from stream_app.runtime.produce import Out


@pytest.mark.parametrize(
    "one, other",
    [
        (Out("t1", b"k1", b"v1", [("h", b"1")], 1), Out("t2", b"k2", b"v2", [("h", b"2")], 2)),
        (Change(b"r1", 1, 2), Change(b"r2", 3, 4)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_written_out_init_sets_every_field(one: object, other: object) -> None:
    # replace() passes every field to __init__ by name: a field __init__ leaves out fails here.
    assert dataclasses.replace(one) == one  # type: ignore[type-var]
    for f in dataclasses.fields(one):  # type: ignore[arg-type]
        mixed = dataclasses.replace(one, **{f.name: getattr(other, f.name)})  # type: ignore[type-var]
        assert getattr(mixed, f.name) == getattr(other, f.name), f.name
        assert mixed != one, f.name


def test_defaults_are_those_of_the_dataclass_fields() -> None:
    assert Out("t", None, None, []).partition is None  # None: the producer hashes the key
    change = Change(None)
    assert (change.req_offset, change.status_offset) == (-1, -1)  # -1: no input of that topic
