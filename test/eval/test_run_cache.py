"""The run cache's code digest: a change to what the result-shaping code does invalidates cached runs; docs do not."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgesync_ros.eval import tasks

PACKAGE = Path(tasks.__file__).resolve().parent.parent


def _copy_package(tmp_path: Path) -> Path:
    dst = tmp_path / "edgesync_ros"
    for sub in ("eval", "core", "models"):
        shutil.copytree(PACKAGE / sub, dst / sub, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_digest_is_stable_and_ignores_docstrings_and_comments(tmp_path: Path) -> None:
    pkg = _copy_package(tmp_path)
    before = tasks.code_digest(pkg)
    assert tasks.code_digest(pkg) == before
    training = pkg / "core" / "training.py"
    text = training.read_text(encoding="utf-8")
    edited = text.replace('"""EdgeSync head training', '"""Reworded: EdgeSync head training', 1)
    edited = edited.replace("def _clone_state(", "# a new comment\ndef _clone_state(", 1)
    assert edited != text
    training.write_text(edited, encoding="utf-8")
    assert tasks.code_digest(pkg) == before


def test_digest_changes_when_the_trainer_or_the_edge_model_changes(tmp_path: Path) -> None:
    pkg = _copy_package(tmp_path)
    before = tasks.code_digest(pkg)
    training = pkg / "core" / "training.py"
    text = training.read_text(encoding="utf-8")
    training.write_text(text.replace("_EVAL_CHUNK = 512", "_EVAL_CHUNK = 256", 1), encoding="utf-8")
    after_training = tasks.code_digest(pkg)
    assert after_training != before
    edge = pkg / "models" / "edge.py"
    edge.write_text(edge.read_text(encoding="utf-8") + "\nEXTRA = 1\n", encoding="utf-8")
    assert tasks.code_digest(pkg) not in (before, after_training)


def test_task_key_covers_the_installed_code() -> None:
    # The key the evaluator stores runs under includes the digest of this very package.
    assert tasks.package_code_digest() == tasks.code_digest(PACKAGE)


def test_every_result_module_exists() -> None:
    # A module that moved out from under the list would silently stop invalidating cached runs.
    for pattern in tasks.RESULT_MODULES:
        assert list(PACKAGE.glob(pattern)), pattern


def test_digest_changes_when_the_cost_model_or_the_simulator_changes(tmp_path: Path) -> None:
    pkg = _copy_package(tmp_path)
    seen = {tasks.code_digest(pkg)}
    for name in ("cost.py", "simulator.py", "tasks.py", "scoring.py"):
        path = pkg / "eval" / name
        path.write_text(path.read_text(encoding="utf-8") + "\nEXTRA = 1\n", encoding="utf-8")
        seen.add(tasks.code_digest(pkg))
    assert len(seen) == 5
