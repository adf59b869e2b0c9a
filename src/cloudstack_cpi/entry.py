"""``bin/cpi CONFIG_PATH``: read one request from stdin, write one response to stdout, exit 0.

bosh create-env treats a non-zero exit as fatal and ignores the output, so the
process exits 0 whatever happened, after writing exactly one JSON document.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn


def _stop_on_signals(log) -> None:
    """SIGTERM and SIGINT stop the call once: what it created is removed, then it answers (issue: SIGTERM used to
    kill the process with no answer, leaving the VM it was creating).  A second signal during that cleanup is
    only logged, so the cleanup finishes; SIGKILL remains the way to stop at once."""
    from .errors import Interrupted

    raised: list[str] = []

    def handler(signum, _frame) -> None:
        name = signal.Signals(signum).name
        if raised:
            log.warning(f"{name} again: still removing what this call created; it answers when done")
            return
        raised.append(name)
        log.warning(f"{name}: stopping this call; removing what it created before answering")
        raise Interrupted(name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config_path = argv[0] if argv else None
    from . import rpc
    from .log import Logger

    log = Logger()
    _stop_on_signals(log)
    try:
        raw, size = rpc.read_request(sys.stdin.buffer)  # a request over the limit is drained, not kept
    except (OSError, ValueError):
        raw, size = b"", 0
    try:
        response = rpc.handle(raw, config_path, log, size)
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit/MemoryError still answer
        from .errors import CloudError

        response = {"result": None, "error": CloudError(f"Interrupted: {type(exc).__name__}").to_wire(), "log": ""}
    del raw
    for signum in (signal.SIGTERM, signal.SIGINT):  # the answer is ready: nothing may stop it being written
        signal.signal(signum, signal.SIG_IGN)
    out = sys.stdout.buffer
    out.write(rpc.encode(response))
    out.write(b"\n")
    out.flush()
    return 0


def serve(argv: list[str] | None = None) -> NoReturn:
    """``bin/cpi``'s entry point: ``main``, then the process ends at once.

    Once the answer is written there is nothing left to do, yet an orderly interpreter exit (module teardown,
    longer after pydantic) took 0.06-0.19 s, and the director waits for the process on every call
    (bench/critical_path.py: has_vm 0.46 -> 0.30 s, create_disk 0.74 -> 0.57 s).  stdout and stderr are flushed
    first; nothing a call makes needs an exit handler (its temporary files are removed by the call itself, and the
    CA file is shared and kept on purpose)."""
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: the answer could not be delivered anyway
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    serve()
