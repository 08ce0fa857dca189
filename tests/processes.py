"""A child process whose output lines a test waits for (``setpiece dev`` in the tests)."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class LineProcess:
    """Runs ``args``; a thread collects its output (stdout and stderr) line by line."""

    def __init__(self, args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            list(args), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)

    def wait_for(self, text: str | Callable[[str], bool], timeout: float = 60.0) -> str:
        """The first line from now on holding ``text`` (or passing it, a test of a line);
        AssertionError (with the output so far) if none comes within ``timeout`` seconds or the
        process ends first."""
        test = text if callable(text) else (lambda line: text in line)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if test(line):
                return line
        raise AssertionError(f"{text!r} not seen in time; output:\n{''.join(self.lines)}")

    def close(self) -> None:
        """Kill the process if it still runs, and release its output (test clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int:
        """SIGINT (a clean stop), then SIGKILL after 30 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.reader.join(5)  # the rest of the output first: no read of a closed pipe
            if self.proc.stdout is not None:
                self.proc.stdout.close()
