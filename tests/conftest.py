"""Fixtures shared by the whole suite. Real data lives in ../shared/data (never copied in)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGEDEPLOY_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder {SHARED_DATA} is missing (set EDGEDEPLOY_DATA)")
    return SHARED_DATA


# ---- the loopback board of the device tests (tests/ssh_board.py) ------------------------------
@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 whose "board" is this machine."""
    from tests.ssh_board import SSHD, start_board

    if SSHD is None:
        pytest.skip("sshd is not installed: apt-get install -y openssh-server (.ci/run does)")
    b = start_board(tmp_path_factory.mktemp("board"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def python():
    """The board's Python: one on this machine without the runner and numpy."""
    from tests.ssh_board import board_python

    found = board_python()
    if found is None:
        pytest.skip("no Python >= 3.10 with venv and without numpy on this machine to act as "
                    "the board's (set EDGEDEPLOY_BOARD_PYTHON)")
    return found


@pytest.fixture(scope="module")
def remote_dir():
    """Outlives the session: the runner's venv is made once per source tree."""
    from deploy.device.wheels import host_cache

    path = host_cache() / "test-board"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
