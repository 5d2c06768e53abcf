"""The project speaks of itself only: no development-process talk in any text file of the repository.

Phrases such as a numbered work session, a numbered ticket or a hand-over remark tell a reader how the code came
about, not what it does, and go stale the day they are written. Scanned: every file git tracks plus new files git
does not ignore (so a file is checked before it is committed); binary files are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Each pattern names one kind of process talk; matched case-insensitively, per line.
PATTERNS: tuple[str, ...] = (
    r"\bsessions?\s+#?\d",  # a numbered work session, or a range of them
    r"\b(?:this|that|previous|next|earlier|later|last|current|GPU|shared-host|idle-host|busier-host) session\b",
    r"\b(?:a|each|every) session of\b",
    r"\bissues?\s*#\s*\d|\bissues?\s+\d",  # a numbered ticket
    r"\b(?:per|in|by|from|of|for|where) the issue\b|\bthe issue'?s\b",
    r"\bclosing[- ]note\b",
    r"\bthe lead\b",
    r"\bfiled by\b",
)
PROCESS_TALK = re.compile("|".join(f"(?:{p})" for p in PATTERNS), re.IGNORECASE)


def repository_text_files(root: Path) -> list[Path]:
    """Return the tracked and not-ignored untracked files under ``root`` that exist and read as UTF-8 text."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=True, timeout=60,
    ).stdout.decode("utf-8").split("\0")
    files = []
    for name in sorted(set(filter(None, listed))):
        path = root / name
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def find_process_talk(root: Path, files: list[Path]) -> list[str]:
    """Return ``"path:line: text"`` for every line of ``files`` that matches a process-talk pattern."""
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if PROCESS_TALK.search(line):
                hits.append(f"{path.relative_to(root)}:{number}: {line.strip()[:160]}")
    return hits


def _git_checkout(root: Path) -> bool:
    return shutil.which("git") is not None and (root / ".git").exists()


@pytest.mark.skipif(not _git_checkout(REPO), reason="needs a git checkout of the project")
def test_no_file_talks_about_the_development_process() -> None:
    files = repository_text_files(REPO)
    assert any(f.name == "README.md" for f in files), "the scan found no README: it is not looking at the project"
    hits = find_process_talk(REPO, files)
    assert not hits, "development-process talk (say what the code does, not how it came about):\n" + "\n".join(hits)


# The planted phrases are assembled from pieces so that this file itself stays clean for the scan above.
PLANTED = [
    "Measured in " + "session" + " 4 on an idle host.",
    "Sess" + "ions 5–6 fixed the pool.",
    "See iss" + "ue #12 for the goal.",
    "(iss" + "ue 7 sets no limit)",
    "Per the " + "issue, the stream must discriminate.",
    "Rerun in the next GPU " + "session.",
]
CLEAN = [
    '@pytest.fixture(scope="session")',
    "self.session = ort.InferenceSession(path)",
    "The edge node drops stale frames; 7 issues of the bag are read.",
]


@pytest.mark.skipif(not _git_checkout(REPO), reason="needs a git checkout of the project")
@pytest.mark.parametrize("phrase", PLANTED)
def test_the_scan_notices_a_planted_phrase(tmp_path: Path, phrase: str) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, timeout=60)
    (tmp_path / "notes.md").write_text("# Notes\n\nA clean line.\n" + phrase + "\n", encoding="utf-8")
    (tmp_path / "image.bin").write_bytes(b"\0\x01session 4")
    hits = find_process_talk(tmp_path, repository_text_files(tmp_path))
    assert hits == [f"notes.md:4: {phrase}"]


@pytest.mark.parametrize("line", CLEAN)
def test_the_scan_leaves_ordinary_uses_of_the_words_alone(line: str) -> None:
    assert PROCESS_TALK.search(line) is None
