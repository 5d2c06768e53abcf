"""The ``edgesync`` registry: every row names a front-end of ``edgesync_ros.commands`` with its two entry points."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgesync_ros import cli

REPO = Path(__file__).resolve().parents[1]


def module_functions(module: str) -> set[str]:
    """Names of the top-level functions of a module of the source tree (read, not imported: no rclpy or torch)."""
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_is_a_front_end_with_add_arguments_and_run(name: str):
    module = cli.COMMANDS[name][0]
    assert module.startswith("edgesync_ros.commands."), module
    assert {"add_arguments", "run"} <= module_functions(module)


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit, match="2"):
        cli.main(["no-such-command"])
    assert "invalid choice" in capsys.readouterr().err
