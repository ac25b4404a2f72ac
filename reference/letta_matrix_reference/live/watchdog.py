"""Never leak a server, even if the process that started it is killed with SIGKILL.

:class:`Watchdog` (in the starting process) runs this module as a small process of its own::

    python -m letta_matrix_reference.live.watchdog FD PID START_TICKS GRACE WORKDIR

with the server's own interpreter, in a session of its own, deaf to SIGINT and SIGHUP. It blocks on the
read end ``FD`` of a pipe whose only write end the starting process holds; EOF means that process closed it
(after stopping the server itself) or died. Then, if the server is still the process that was started (PID
and start time), it gets SIGTERM and, after ``GRACE`` seconds, SIGKILL, and its temporary ``WORKDIR`` (empty:
none) is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from letta_matrix_reference.live.process import STOP_TIMEOUT, is_same_process, signal_group

_MODULE = "letta_matrix_reference.live.watchdog"
# The directory that holds the letta_matrix_reference package: a server's venv does not have it installed.
_IMPORT_ROOT = Path(__file__).resolve().parents[2]


class Watchdog:
    """Stops a server if the process that started it dies without stopping it (see above)."""

    def __init__(
        self,
        python: Path,
        pid: int,
        start_ticks: int | None,
        grace: float = STOP_TIMEOUT,
        remove_dir: Path | None = None,
    ) -> None:
        read_end, self._write_end = os.pipe()
        try:
            args = [str(read_end), str(pid), str(start_ticks or ""), str(grace), str(remove_dir or "")]
            self._proc = subprocess.Popen(
                # -s -P and an environment of PYTHONPATH alone: -I, but for the one path this module needs
                [str(python), "-s", "-P", "-m", _MODULE, *args],
                env={"PYTHONPATH": str(_IMPORT_ROOT)},
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def release(self, timeout: float = 5.0) -> None:
        """Close our end of the pipe (the server must already be stopped) and reap the watchdog."""
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def watch(fd: int, pid: int, start_ticks: int | None, grace: float, workdir: Path | None) -> None:
    """Wait for EOF on ``fd``, then stop the server if it is still running (the watchdog's whole job)."""
    with contextlib.suppress(OSError):
        while os.read(fd, 64):  # nothing is ever written: only EOF matters
            pass
    if not is_same_process(pid, start_ticks):
        return
    signal_group(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while is_same_process(pid, start_ticks) and time.monotonic() < end:
        time.sleep(0.1)
    if is_same_process(pid, start_ticks):
        signal_group(pid, signal.SIGKILL)
    if workdir is not None:
        time.sleep(0.2)  # helpers of the group may still be exiting, with files open in the workdir
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    # Ctrl-C in the starter's terminal, or its hangup, must not take the watchdog down before the server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    fd, pid, ticks, grace, workdir = argv
    watch(int(fd), int(pid), int(ticks) if ticks else None, float(grace), Path(workdir) if workdir else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
