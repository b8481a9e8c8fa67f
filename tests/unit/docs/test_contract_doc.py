"""``docs/contract.md`` must name what the code has, and only that: topics, env vars, commands, options.

The page is written by hand (in the project's words, for other teams), so nothing regenerates it; this
test is what keeps it from drifting, the way ``tests/unit/topics`` keeps ``topics/`` true.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from stream_app.cli import build_parser
from stream_app.contracts import schema
from stream_app.contracts.catalogue import CATALOGUE, DEAD_LETTER_HEADERS

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "contract.md"
#: ``STREAM_APP_*`` / ``KAFKA_*`` words in the code that are not environment variables.
NOT_ENV = {"KAFKA_BINDING_VERSION"}  # the AsyncAPI Kafka binding's version, in contracts/schema.py
ENV_WORD = re.compile(r"\b(?:STREAM_APP|KAFKA)_[A-Z0-9_]*[A-Z0-9]\b")
COMMAND_MENTION = re.compile(r"`stream-app ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?([^`]*)`")


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def code_env_vars() -> set[str]:
    """Every environment variable the package reads, found where it is spelled: in its source."""
    found: set[str] = set()
    for path in (ROOT / "stream_app").rglob("*.py"):
        found |= set(ENV_WORD.findall(path.read_text(encoding="utf-8")))
    return found - NOT_ENV


def commands() -> dict[str, argparse.ArgumentParser]:
    """``"topics create"`` -> its parser, for every command and sub-action of ``stream-app``."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[f"{prefix}{name}"] = sub
                    walk(sub, f"{prefix}{name} ")

    walk(build_parser(), "")
    return found


def topics_table() -> set[str]:
    """The first column of the table under ``## Topics``."""
    section = doc().split("## Topics", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {row.split("`")[1] for row in rows}


def test_every_catalogue_topic_is_in_the_table_and_nothing_else() -> None:
    names = {spec.stem.replace("{appId}", "<app-id>") for spec in CATALOGUE}
    assert topics_table() == names


@pytest.mark.parametrize("var", sorted(code_env_vars()))
def test_every_env_var_of_the_code_is_documented(var: str) -> None:
    assert f"`{var}`" in doc(), f"{var} is read by the code but not named in docs/contract.md"


def test_every_env_var_of_the_page_exists() -> None:
    unknown = set(ENV_WORD.findall(doc())) - code_env_vars()
    assert not unknown, f"docs/contract.md names variables the code never reads: {sorted(unknown)}"


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_is_documented(command: str) -> None:
    assert f"`stream-app {command}" in doc(), f"`stream-app {command}` is not in docs/contract.md"


def check_mentions(mentions: list[tuple[str, str, str]], page: str, verb: str) -> None:
    """Every ``(command, maybe a sub-action, the rest)`` a page shows names a command and options
    that exist; ``verb`` words the page's failure (``names``, ``shows``)."""
    known = commands()
    for first, second, rest in mentions:
        name = f"{first} {second}" if second and f"{first} {second}" in known else first
        assert name in known, f"{page} {verb} `stream-app {name}`, which does not exist"
        if second and name == first:
            rest = f" {second}{rest}"
        options = {opt for action in known[name]._actions for opt in action.option_strings}
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
            assert flag in options, f"{page}: `stream-app {name}` has no option {flag}"


def test_every_command_and_option_of_the_page_exists() -> None:
    mentions = COMMAND_MENTION.findall(doc())
    assert mentions
    check_mentions(mentions, "docs/contract.md", "names")


def test_records_and_dead_letter_headers_are_named() -> None:
    text = doc()
    records = [name[len("schemas/") : -len(".schema.json")] for name in schema.render() if "/" in name]
    assert records
    for record in records:
        assert f"**{record}**" in text, record
    for header in DEAD_LETTER_HEADERS:
        assert f"`{header}`" in text, header


def test_the_check_itself_finds_strangers() -> None:
    """The regular expressions above do find what a drifted page would contain."""
    found = ENV_WORD.findall("set `STREAM_APP_NOPE_SECONDS` and KAFKA_X")
    assert found == ["STREAM_APP_NOPE_SECONDS", "KAFKA_X"]
    assert COMMAND_MENTION.findall("`stream-app topics create --partitions 3`") == [
        ("topics", "create", " --partitions 3")
    ]


def test_links_to_the_contract_stay_inside_the_repository() -> None:
    """The README and topics/README.md once linked ../shared/CONTRACT.md, outside any clone."""
    for page in (ROOT / "README.md", ROOT / "topics" / "README.md", ROOT / "docs" / "semantics.md"):
        text = page.read_text(encoding="utf-8")
        assert "../shared/" not in text, page
        assert "CONTRACT.md" not in text, f"{page}: the contract is docs/contract.md"
