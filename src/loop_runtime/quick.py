"""The console entry point: ``list`` and ``status`` answered without importing click.

People type ``loop-runtime list`` and ``loop-runtime status`` all day, and schedulers call
them often; importing click alone costs about three bare interpreter start-ups. So the
entry point first looks at argv: when it is plainly one of those two commands
(``[--root DIR] list|status [--json] [--root DIR]``) it runs the command body directly;
anything else — help, an unknown flag, a root that click would reject, shell completion —
goes to the click CLI (``loop_runtime.cli``), which stays the reference for parsing and
messages. The command bodies live in ``cli.readouts`` (no click) and the click commands call
the same ones, so both paths print the same bytes and exit with the same codes.

Nothing here imports more than ``os`` and ``sys`` at module level, and the fast path runs with
the cyclic garbage collector paused (see ``main``).
"""

from __future__ import annotations

import os
import sys

FAST_COMMANDS = ("list", "status")


def main(argv: list[str] | None = None) -> None:
    """``loop-runtime``: the fast path for ``list``/``status``, else the click CLI."""
    request = fast_request(sys.argv[1:] if argv is None else list(argv))
    if request is None:
        from .cli import main as full_main

        try:
            full_main(argv)
        except SystemExit as e:
            _exit_now_after_temporal(e.code)
            raise
        _exit_now_after_temporal(0)
        return
    import gc

    # A read command is short and allocates mostly acyclic values (module objects, the run
    # log's entries): the cyclic collector's passes during its imports cost about 4 ms of the
    # 100 ms it may take, and free nothing that reference counting would not.
    gc.disable()
    try:
        from .cli.readouts import guarded, show_list, show_status

        command, root, as_json = request
        guarded(lambda: (show_list if command == "list" else show_status)(root, as_json))
    finally:
        gc.enable()


def _exit_now_after_temporal(code: object) -> None:
    """After a command that used the Temporal client, exit without interpreter finalization.

    The client's Rust core keeps threads that may call into Python while the interpreter is
    being torn down, which aborts the process (SIGABRT) after the command itself finished.
    """
    if "temporalio.bridge.client" not in sys.modules:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 — a closed pipe: nothing more to say
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def fast_request(args: list[str]) -> tuple[str, str | None, bool] | None:
    """``(command, --root value, --json)`` when argv is plainly ``list`` or ``status``, else None.

    None means "let click decide": whatever click would treat specially (``--help``,
    ``--version``, an unknown or repeated-in-odd-places token, an option value click
    would reject, completion mode, a misconfigured output encoding) is never guessed at.
    As in click, a later ``--root`` wins over an earlier one.
    """
    if os.environ.get("_LOOP_RUNTIME_COMPLETE") or not _streams_ok():
        return None
    command: str | None = None
    root: str | None = None
    as_json = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--root" or arg.startswith("--root="):
            if arg == "--root":
                if i + 1 >= len(args):
                    return None
                value, i = args[i + 1], i + 2
            else:
                value, i = arg[len("--root="):], i + 1
            if not _plain_root(value):
                return None
            root = value
        elif command is None and arg in FAST_COMMANDS:
            command, i = arg, i + 1
        elif command is not None and arg == "--json":
            as_json, i = True, i + 1
        else:
            return None
    return None if command is None else (command, root, as_json)


def _plain_root(value: str) -> bool:
    """A ``--root`` value click's ``Path(file_okay=False)`` accepts unchanged (else click reports it)."""
    if not value or value.startswith("-"):
        return False
    import stat

    try:
        st = os.stat(value)
    except OSError:
        return True  # missing: click passes it on; resolve_root reports it (both paths alike)
    except ValueError:  # an embedded NUL byte: click's own handling applies
        return False
    return not stat.S_ISREG(st.st_mode) and os.access(value, os.R_OK)


def _streams_ok() -> bool:
    """Click re-wraps an ASCII-configured stdout/stderr; leave such set-ups to click."""
    from .cli.readouts import misconfigured

    return not (misconfigured(sys.stdout) or misconfigured(sys.stderr))
