"""Every `ssmseg ...` command line in the fenced code blocks of README.md and docs/usage.md parses: its command
and options exist and take the values shown (Click's own parsing, nothing runs), its preset and --set values
build a valid config, and the README's install commands are exactly the ones CI runs."""

from __future__ import annotations

import re
import shlex

import pytest
import typer.main

from ssmseg.cli.app import app
from ssmseg.config import build_config
from tests.conftest import REPO

DOCS = ("README.md", "docs/usage.md")
# Placeholders in the docs, and a value each can take for parsing.
PLACEHOLDERS = {"<run>": "run", "=N": "=2"}


def _blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)


def command_lines(doc: str) -> list[str]:
    """The `ssmseg` command lines of a document's code blocks (continuations joined, comments dropped)."""
    out = []
    for block in _blocks((REPO / doc).read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            line = line.split("&&")[-1].strip()  # `cd DIR && ssmseg ...`
            if line.startswith("torchrun "):
                line = "ssmseg " + line.split(" -m ssmseg ", 1)[1]
            if line.startswith("ssmseg "):
                out.append(line)
    return out


CASES = [(doc, line) for doc in DOCS for line in command_lines(doc)]


def test_the_docs_hold_commands():
    assert len(command_lines("README.md")) >= 8 and len(command_lines("docs/usage.md")) >= 25


def _args(line: str) -> list[str]:
    """The arguments after `ssmseg`; an optional part ``[--set x=N]`` is kept (and checked) without its brackets."""
    for old, new in PLACEHOLDERS.items():
        line = line.replace(old, new)
    args, optional = [], False
    for token in shlex.split(line)[1:]:
        if token.startswith("[--"):
            token, optional = token[1:], True
        if optional and token.endswith("]"):
            token, optional = token[:-1], False
        args.append(token)
    return args


@pytest.mark.parametrize(("doc", "line"), CASES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(CASES)])
def test_documented_command_parses_and_its_settings_validate(doc, line):
    check_line(doc, line)


@pytest.mark.parametrize(
    "line",
    [
        "ssmseg trian --preset fast",
        "ssmseg train --presett fast",
        "ssmseg train --preset fsat",
        "ssmseg eval runs/r --samples many",
        "ssmseg train --set optim.lrr=1",
        "ssmseg config shwo",
    ],
)
def test_a_wrong_command_line_fails_the_check(line):
    with pytest.raises(Exception):  # noqa: B017 - Click's usage errors, an assertion or a ConfigError
        check_line("a doc", line)


def check_line(doc: str, line: str) -> None:
    """Parse ``line`` as the CLI would (nothing runs) and build the config its preset and --set give."""
    args = _args(line)
    command, path = typer.main.get_command(app), ["ssmseg"]
    while hasattr(command, "get_command"):  # a group: `ssmseg`, `ssmseg config`
        name, args = args[0], args[1:]
        found = command.get_command(None, name)
        assert found is not None, f"{doc}: no command '{' '.join([*path, name])}' ({line})"
        command, path = found, [*path, name]
    sub = command.make_context(" ".join(path), list(args))  # Click's own parsing and type checks, nothing runs
    params = sub.params
    overrides = params.get("set_") or []
    explicit = {"finetune": {"init": str(params["init"])}} if params.get("init") else None  # train --init
    if params.get("preset") or overrides:  # --config files are the user's: not here
        build_config(preset=params.get("preset"), overrides=overrides, explicit=explicit)


def test_readme_install_commands_are_the_ones_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("pip install")]
    assert install == ci
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
