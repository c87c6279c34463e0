"""No command overwrites the source tree by default.

A copy of this checkout (tracked and new files, as a fresh git repository) is the working
directory, and its code is the code that runs (``PYTHONPATH``). Every subcommand that can run
here without a service runs with its defaults from the copy's root; afterwards ``git status
--porcelain`` must be what it was: default outputs go to the working directory and are
git-ignored. (``serve`` writes nothing and runs until stopped; ``publish`` needs a broker:
both are left out.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.services import free_port
from tests.conftest import REPO, TEST_KEY

EARLYRISK = str(Path(sys.executable).parent / "earlyrisk")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def _copy_checkout(dst: Path) -> None:
    files = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, files.split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    _git(dst, "init", "-q")
    _git(dst, "add", "-A")
    _git(dst, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "copy")


def _stamps(root: Path) -> dict[str, int]:
    """Modification time of every tracked file."""
    return {name: (root / name).stat().st_mtime_ns
            for name in filter(None, _git(root, "ls-files", "-z").split("\0"))}


@pytest.mark.slow
def test_every_command_with_defaults_leaves_the_tree_clean(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    _copy_checkout(root)
    before = _git(root, "status", "--porcelain")
    stamps = _stamps(root)
    env = dict(os.environ, PYTHONPATH=str(root), EARLYRISK_PSEUDONYM_KEY=TEST_KEY,
               XDG_STATE_HOME=str(tmp_path / "state"), REDDIT_CLIENT_ID="fake",
               REDDIT_CLIENT_SECRET="fake")
    where = subprocess.run([sys.executable, "-c", "import pipelines; print(pipelines.__file__)"],
                           cwd=root, env=env, capture_output=True, text=True).stdout
    assert where.startswith(str(root)), where  # the copy's code runs, not this checkout's
    commands = [
        ["run", "--no-progress"],
        ["sql", "select count(*) from alerts"],
        ["analytics", "alerts_per_day"],
        ["forget", "--user", "nobody", "--dry-run"],
        ["evaluate", "--no-progress"],
        ["simulate"],
        ["train"],
        ["bench", "--quick", "--only", "scorer"],
        # Reddit unreachable: exits 1 after 2 s, having opened its default output and state.
        ["crawl", "--api-url", f"http://127.0.0.1:{free_port()}", "--duration", "2"],
    ]
    for argv in commands:
        proc = subprocess.run([EARLYRISK, *argv], cwd=root, env=env, capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL)
        assert proc.returncode == (1 if argv[0] == "crawl" else 0), (argv, proc.stderr[-2000:])
    assert _git(root, "status", "--porcelain") == before
    # Not even rewritten with the same bytes (simulate's defaults reproduce the bundled files).
    assert _stamps(root) == stamps
    for output in ("earlyrisk.duckdb", "earlyrisk-eval", "earlyrisk-model",
                   "earlyrisk-simulated", "earlyrisk-bench.json", "crawled.jsonl",
                   "earlyrisk-crawler.sqlite"):
        assert (root / output).exists(), output  # written where the user stands
    assert _git(root, "status", "--porcelain", "--ignored").count("!!") >= 7
