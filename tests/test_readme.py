"""The README's first steps, followed in order on a fresh copy, give what the README shows.

The commands are read from README.md itself, so this test breaks when the README drifts: the
demo (``scripts/demo``), then ``setpiece dev`` on the example, then the block under "Its HTTP API"
— a token minted with ``setpiece token``, a POST and a GET with curl — each compared with the
output the README shows under it (``...`` in the shown output stands for anything). Then the
demo runs again, and dev's state must be untouched; and the registration must have left no dead
letter (dev runs the example's stand-in manufacturer, as the demo does).

The copy is a temporary folder with the example, the scripts and a link to this checkout's
``.venv``. The only liberty taken: the gateway's port, 8000 in the README, is a free one here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import LineProcess

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_PORT = "127.0.0.1:8000"
FENCE = re.compile(r"^```\S*\s*$")
# What a fresh shell has: none of setpiece's or the example's settings.
UNSET = ("SETPIECE_ENGINE", "SETPIECE_STORE", "SETPIECE_JWT_SECRET", "MANUFACTURER_URL",
         "OUTBOX_DIR", "PYTHONPATH")


def block_after(heading: str) -> list[str]:
    """The lines of the first fenced block after the README's heading ``heading``."""
    lines = README.read_text(encoding="utf-8").split("\n")
    start = next((i for i, line in enumerate(lines)
                  if line.lstrip("#").strip() == heading and line.startswith("#")), None)
    assert start is not None, f"README.md has no heading {heading!r}"
    opening = next(i for i in range(start + 1, len(lines)) if FENCE.match(lines[i]))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].strip() == "```")
    return lines[opening + 1:closing]


def command(lines: list[str], word: str) -> list[str]:
    """The one-line command of the block whose words include ``word`` (comments dropped)."""
    found = [shlex.split(line, comments=True) for line in lines]
    matching = [words for words in found if word in words]
    assert len(matching) == 1, f"expected one command with {word!r} in {lines}"
    return matching[0]


def steps(lines: list[str]) -> list[tuple[str, str]]:
    """(shell commands, the output shown under them as ``# ...`` lines) in order."""
    out: list[tuple[str, str]] = []
    script: list[str] = []
    shown: list[str] = []
    for line in lines:
        if line.startswith("# "):
            shown.append(line[2:])
            continue
        if shown:
            out.append(("\n".join(script), "\n".join(shown)))
            script, shown = [], []
        script.append(line)
    if script or shown:
        out.append(("\n".join(script), "\n".join(shown)))
    return out


def matches(shown: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in shown.strip().split("..."))
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Shell:
    """Runs README lines with bash in the copy; variables they set carry over, as in a session."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if k not in UNSET}
        self.env["COLUMNS"] = "200"

    def run(self, script: str, timeout: float = 120) -> str:
        state = self.cwd / ".shell-env"
        wrapped = f"set -a\n{script}\nenv -0 > {shlex.quote(str(state))}\n"
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", wrapped], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{script}\nfailed:\n{done.stdout}\n{done.stderr}"
        for item in state.read_text().split("\0"):
            name, sep, value = item.partition("=")
            if sep and name not in ("_", "SHLVL", "PWD", "OLDPWD"):
                self.env[name] = value
        return done.stdout


@pytest.fixture
def fresh_copy(tmp_path: Path) -> Path:
    """What a fresh clone has that these steps use, with this checkout's virtualenv."""
    assert (ROOT / ".venv" / "bin" / "setpiece").exists(), "run scripts/setup first"
    copy = tmp_path / "setpiece"
    copy.mkdir()
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copytree(ROOT / "examples", copy / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


@pytest.fixture
def devs() -> Iterator[list[LineProcess]]:
    started: list[LineProcess] = []
    yield started
    for dev in started:
        dev.stop()


def poll(shell: Shell, script: str, shown: str, timeout: float = 60.0) -> str:
    """Run ``script`` until its output is what the README shows (handlers run asynchronously:
    the README's reader types the next command a moment later)."""
    deadline = time.monotonic() + timeout
    actual = shell.run(script)
    while not matches(shown, actual) and time.monotonic() < deadline:
        time.sleep(0.2)
        actual = shell.run(script)
    return actual


@pytest.mark.slow
@pytest.mark.timeout(300)  # several processes; the machine may be loaded
def test_the_readme_steps_give_what_the_readme_shows(
    fresh_copy: Path, devs: list[LineProcess]
) -> None:
    shell = Shell(fresh_copy)
    setup = block_after("Set up and run")
    live = block_after("Live in it: the `setpiece` command")
    http = block_after("Its HTTP API, with a minted token")
    port = free_port()

    # 1. the demo
    demo = command(setup, "scripts/demo")
    assert demo == ["scripts/demo"]
    shell.run(shlex.join(demo))

    # 2. setpiece dev on the example, its gateway on a free port instead of 8000
    dev_args = command(live, "dev")
    dev = LineProcess([*dev_args, "--http", f"127.0.0.1:{port}"], fresh_copy, shell.env)
    devs.append(dev)
    dev.wait_for("HTTP gateway on")

    # 3. the HTTP API block: each command's output is what the README shows under it
    http_steps = steps(http)
    assert len(http_steps) >= 2 and all(shown for _, shown in http_steps), http_steps
    assert all(README_PORT in script for script, _ in http_steps)
    for script, shown in http_steps:
        script = script.replace(README_PORT, f"127.0.0.1:{port}")
        actual = poll(shell, script, shown)
        assert matches(shown, actual), f"README shows {shown!r}, got {actual!r}"

    # 4. no dead letter: once every consumer has caught up, the dead-letter list is empty
    inspect = command(live, "inspect")
    assert "--json" in inspect

    def lags() -> dict[str, int]:
        data = json.loads(shell.run(shlex.join(inspect)))
        return {group["group"]: group["lag"] for group in data["groups"]}

    deadline = time.monotonic() + 60
    while any(lags().values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(lags().values()), lags()
    letters = json.loads(shell.run(shlex.join([*command(live, "dlq"), "--json"])))
    assert letters == [], letters

    # 5. the demo again: dev's state is untouched (same answer to the same GET)
    shell.run(shlex.join(demo))
    script, shown = http_steps[-1]
    actual = shell.run(script.replace(README_PORT, f"127.0.0.1:{port}"))
    assert matches(shown, actual), f"after the demo ran again: {actual!r}"
    assert dev.stop() == 0
