"""``pip install .`` (not editable): the installed package runs the defaults on its own.

A wheel is built from this checkout and installed into a fresh virtual environment; the
commands then run in a directory far from the checkout, so every default (the bundled
stream, truth files, model) must come from the installed package data.

To stay within a couple of minutes, the fresh environment borrows the pinned dependencies
already installed here (a ``.pth`` line naming this environment's site-packages) instead of
downloading them again: earlyrisk itself is installed from the wheel, and the test checks it
is that copy, not the checkout, that runs. ``EARLYRISK_FULL_INSTALL=1`` installs the
dependencies too (``pip install WHEEL``, as a user would; several minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_KEY


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _source_tree(dst: Path) -> Path:
    """The checkout's files (tracked and new, not ignored): what a fresh clone builds from,
    without a build/ directory left by an earlier build of this checkout."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = _source_tree(tmp_path_factory.mktemp("src"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
          "-w", str(out), str(src)], timeout=600)
    (whl,) = out.glob("earlyrisk-*.whl")
    return whl


def test_wheel_ships_the_defaults(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in REPO.glob("data/*/*"):  # every bundled data file, whatever was added
        assert f"earlyrisk_data/{path.relative_to(REPO / 'data')}" in names, path
    for path in (REPO / "models").glob("*/*"):  # models/default/, models/lexicons/, ...
        if path.is_file() and "__pycache__" not in path.parts:
            assert f"models/{path.relative_to(REPO / 'models')}" in names, path
    assert "webapp/templates/base.html" in names
    assert "analytics/queries/alerts_per_day.sql" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


@pytest.mark.slow
def test_pip_install_runs_the_defaults(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    py = venv / "bin" / "python"
    if os.environ.get("EARLYRISK_FULL_INSTALL") == "1":
        _run([str(py), "-m", "pip", "install", "-q", str(wheel)], timeout=3600)
    else:
        site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                                          "'purelib'))"]).stdout.strip())
        (site / "zz-borrowed-dependencies.pth").write_text(
            sysconfig.get_path("purelib") + "\n")
        _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
             timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(EARLYRISK_PSEUDONYM_KEY=TEST_KEY, XDG_STATE_HOME=str(tmp_path / "state"))
    where = _run([str(py), "-c", "import pipelines, corpora.simulate as s; "
                  "print(pipelines.__file__); print(s.DATA_DIR)"], cwd=work, env=env).stdout
    assert str(REPO) not in where and str(venv) in where, where
    earlyrisk = str(venv / "bin" / "earlyrisk")
    assert _run([earlyrisk, "--version"], cwd=work, env=env).stdout.startswith("earlyrisk ")
    out = _run([earlyrisk, "run", "--no-progress"], cwd=work, env=env, timeout=600).stdout
    assert "read = scored + dead-lettered" in out and "submissions read          3,319" in out
    out = _run([earlyrisk, "evaluate", "--no-progress", "--no-plots"], cwd=work, env=env,
               timeout=600).stdout
    assert "incremental" in out.lower()
    assert (work / "earlyrisk.duckdb").is_file() and (work / "earlyrisk-eval").is_dir()
