"""The README's "run it" recipes name real commands: each `extendq` line parses against the CLI as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.core
import typer.main

from extendq.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## Run it with docker compose", "## Run the pieces yourself")


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _extendq_lines() -> list[list[str]]:
    """Every `extendq ...` invocation in the sections' shell blocks, as its arguments after `extendq`."""
    found = []
    for title in SECTIONS:
        for block in re.findall(r"```sh\n(.*?)```", _section(title), re.DOTALL):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                commands: list[list[str]] = [[]]
                for word in words:  # `a && b`, `a &`: one command each
                    commands.append([]) if word in ("&&", "&", ";") else commands[-1].append(word)
                found += [command[command.index("extendq") + 1 :] for command in commands if "extendq" in command]
    return found


def test_the_recipes_have_extendq_lines_to_check() -> None:
    assert {args[0] for args in _extendq_lines()} >= {"emulator", "worker", "submit"}


@pytest.mark.parametrize("args", _extendq_lines(), ids=lambda args: " ".join(args))
def test_each_extendq_line_parses_against_the_cli(args: list[str]) -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    # When the line's command and options are parsed (not run) by the real CLI
    command = group.commands.get(args[0])
    assert command is not None, f"`extendq {args[0]}` is not a command"
    with group.context_class(group, info_name="extendq") as parent:
        command.make_context(args[0], list(args[1:]), parent=parent)
    # Then each sample it names is in the repository
    for arg in args[1:]:
        if arg.startswith("samples/"):
            assert (ROOT / arg).exists(), arg
