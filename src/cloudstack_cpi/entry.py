"""``bin/cpi CONFIG_PATH``: read one request from stdin, write one response to stdout, exit 0.

bosh create-env treats a non-zero exit as fatal and ignores the output, so the
process exits 0 whatever happened, after writing exactly one JSON document.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config_path = argv[0] if argv else None
    from .log import Logger
    from . import rpc

    log = Logger()
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
    out = sys.stdout.buffer
    out.write(rpc.encode(response))
    out.write(b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
