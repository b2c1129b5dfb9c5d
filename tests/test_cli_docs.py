"""The README's command-line block and `cpc_tf COMMAND --help` list the same flags."""

from __future__ import annotations

import re

from helpers import REPO_ROOT

from cpc_tf.cli import build_parser

# flags every command shares (documented once under the block, not per command)
COMMON = {"--help", "--verbose", "-h"}


def _readme_flags() -> dict[str, set[str]]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## The command line", 1)[1].split("```", 2)[1]
    flags: dict[str, set[str]] = {}
    command = ""
    for line in block.splitlines():
        m = re.match(r"cpc_tf (\w+)", line)
        if m:
            command = m.group(1)
            flags.setdefault(command, set())
        if command:
            flags[command] |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line))
    return flags


def _parser_flags() -> dict[str, set[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")  # noqa: SLF001
    return {
        name: {o for a in p._actions for o in a.option_strings} - COMMON  # noqa: SLF001
        for name, p in sub.choices.items()
    }


def test_readme_lists_every_command_and_flag_of_the_cli() -> None:
    readme, cli = _readme_flags(), _parser_flags()
    assert sorted(readme) == sorted(cli)
    for command in cli:
        assert readme[command] - cli[command] == set(), (
            f"README documents flags {command} does not have"
        )
        assert cli[command] - readme[command] == set(), f"README omits flags of {command}"


def test_the_comparison_sees_a_missing_flag(monkeypatch) -> None:
    real = _readme_flags()
    monkeypatch.setattr(__import__(__name__), "_readme_flags", lambda: {**real, "demo": set()})
    import pytest

    with pytest.raises(AssertionError, match="README omits flags of demo"):
        test_readme_lists_every_command_and_flag_of_the_cli()
