"""``list`` and ``status``: their bodies, shared by the click CLI and the fast entry point (``quick``).

Presentation only: the documents come from the application layer (``app.commands``), the
words and tables are made here. Only ``os`` and ``sys`` at module level, and no click:
``quick`` runs these without the CLI framework, the click commands (``cli.show``) run the
same functions inside it, so the two print the same bytes. ``guarded`` is the CLI's
last-resort error mapping (one line, documented exit codes).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def misconfigured(stream: Any) -> bool:
    """click's test: a stream whose encoding is ASCII (or missing) gets re-wrapped as UTF-8."""
    if stream is None:
        return False
    import codecs

    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "ascii"
    except LookupError:
        return False


def say_error(text: str) -> None:
    """One line on stderr, redacted: an error that names a bad value may be naming a secret
    (a token in ``loop-runtime.toml``, a notify URL with its password)."""
    from ..adapters.environment import secret_values
    from ..core.redact import redact

    try:
        from pathlib import Path

        known = secret_values(Path(os.environ.get("LOOP_PROJECT_ROOT") or "."), os.environ)
    except Exception:  # noqa: BLE001 — the error being reported matters more than the extra literals
        known = ()
    echo(redact(text, extra_secrets=known), err=True)


def guarded(run: Callable[[], Any]) -> None:
    """Map every error to one line and the documented exit code (R27): the CLI's last resort.

    ``cli.entry.main`` handles click's own exceptions, then comes here, so both entry paths
    report a ``LoopError``, an ``OSError`` or a bug in the same words.
    """
    from ..errors import LoopError

    try:
        run()
    except LoopError as e:
        say_error(f"loop-runtime: {e}")
        sys.exit(e.exit_code if e.exit_code != 0 else 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        say_error(f"loop-runtime: {e.filename or ''}: {e.strerror}".replace(": :", ":"))
        sys.exit(1)
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("LOOP_RUNTIME_DEBUG"):
            raise
        from ..optional import missing_message

        missing = missing_message(e) if isinstance(e, ImportError) else None
        if missing:  # an optional part used without its extra: name the extra, not "internal error"
            say_error(f"loop-runtime: {missing}")
            sys.exit(1)
        say_error(f"loop-runtime: internal error: {type(e).__name__}: {e} (set LOOP_RUNTIME_DEBUG=1 for a "
                  "traceback)")
        sys.exit(1)


def echo(message: str, *, err: bool = False, file: Any = None) -> None:
    """``click.echo`` for text: a newline, ANSI codes stripped when not a terminal, always flushed.

    On an ASCII-configured standard stream (which the fast path never meets: it defers to
    click then) click's own echo is used, since click re-wraps such a stream as UTF-8.
    """
    stream = file if file is not None else (sys.stderr if err else sys.stdout)
    if stream is None:
        return
    if stream in (sys.stdout, sys.stderr) and misconfigured(stream):
        import click

        click.echo(message, err=stream is sys.stderr)
        return
    out = message + "\n"
    if not _isatty(stream):
        import re

        out = re.sub(r"\033\[[0-?]*[ -/]*[@-~]", "", out)  # click's _ansi_re
    stream.write(out)
    stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def emit_json(data: Any) -> None:
    import json

    echo(json.dumps(data, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------- list


def show_list(root_flag: str | None, as_json: bool) -> None:
    """``loop-runtime list``: the registry's patterns (the project's registry, else the bundled one)."""
    from ..app.commands import list_doc
    from ..app.runtime import resolve_root

    doc = list_doc(resolve_root(root_flag))
    rows, reg = doc["patterns"], doc["registry"]
    if as_json:
        emit_json(doc)
        return
    from ..render import table

    echo(f"Registry: {reg['source']} ({reg['path']})")
    echo(table([[r["id"], r["name"], r["cadence"], r["risk"], r["weekOneMode"] or "-", r["tokenCost"] or "-",
                 f"{r['dailyCap']:,}" if r["dailyCap"] else "unknown", r["state"]] for r in rows],
               ["ID", "NAME", "CADENCE", "RISK", "WEEK-1", "COST", "DAILY CAP", "STATE FILE"]))
    for w in doc["warnings"]:
        echo(f"warning: {w}", err=True)


# ---------------------------------------------------------------------------- status


def show_status(root_flag: str | None, as_json: bool, project: Any = None) -> None:
    """``loop-runtime status``: every loop's level, cadence, next run, last outcome, spend, escalations."""
    from ..app.commands import status_doc
    from ..app.runtime import load_project, resolve_root

    doc = status_doc(project if project is not None else load_project(resolve_root(root_flag)))
    if as_json:
        emit_json(doc)
        return
    print_status(doc)


def status_rows(doc: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Each loop's cells as (text, rich style): the same words on a terminal and in a pipe."""
    rows = []
    for lp in doc["loops"]:
        lvl, b = lp["level"], lp["budget"]
        spend = f"{b['spent']:,} / {b['cap']:,}" if b["cap"] else f"{b['spent']:,} / ?"
        spend_style = ""
        if b["percent"] is not None and b["percent"] >= 80:
            spend_style = "red" if b["percent"] >= 100 else "yellow"
        last, last_style = (lp["lastRun"]["outcome"] if lp["lastRun"] else "never"), ""
        if lp["running"]:
            last, last_style = f"running: {lp['running']['phase']}", "cyan"
        eff = lvl["effective"]
        level = lvl["configured"] if eff == lvl["configured"] else f"{lvl['configured']}→{eff}"
        rows.append([(lp["pattern"], ""), (level, "" if eff == lvl["configured"] else "yellow"),
                     (lp["cadence"], ""), (lp["nextRun"] or "-", ""), (last, last_style), (spend, spend_style),
                     (f"{lp['runs']['today']:,}/{lp['runs']['max'] or '-'}", ""),
                     (f"{lp['openEscalations']:,}" if lp["openEscalations"] else "-", ""),
                     ("ON", "red") if lp["killSwitch"]["engaged"] else ("off", "")])
    return rows


STATUS_COLUMNS = ("LOOP", "LEVEL", "CADENCE", "NEXT RUN", "LAST", "TOKENS TODAY", "RUNS", "ESC", "KILL")


def print_status(doc: dict[str, Any], stream: Any = None) -> None:
    """A rich table on a terminal; plain full-width columns, one loop per line, anywhere else (never cut)."""
    stream = stream or sys.stdout
    title = f"{doc['root']}  (registry: {doc['registry']['source']})"
    kill_all = "  KILL SWITCH: ALL LOOPS PAUSED" if doc["killSwitch"]["all"] else ""
    rows = status_rows(doc)
    notes = [f"{lp['pattern']}: {lp['level']['effective']} — {lp['level']['reason']}" for lp in doc["loops"]
             if lp["level"]["effective"] != lp["level"]["configured"]]
    notes += [f"{lp['pattern']}: not enabled (shown because it has run; enable it in LOOP.md or loop-runtime.toml)"
              for lp in doc["loops"] if lp.get("enabled") is False]
    notes += [f"{w['pattern']} is set up here as a GitHub workflow ({w['workflow']}): it runs in GitHub Actions, "
              "not in loop-runtime." for w in doc.get("workflowLoops", [])]
    others = doc.get("otherPatterns", 0)
    if not doc["loops"]:
        from ..app.loops import LOOKED_FOR

        notes.append(f"No loops set up here: looked for {', '.join(LOOKED_FOR)}.")
    if others:
        notes.append(f"{others:,} other pattern(s) in the {doc['registry']['source']} registry are not set up here "
                     "(`loop-runtime list` shows them).")
    from ..term import interactive

    if not interactive(stream):
        from ..render import table

        echo(title + kill_all, file=stream)
        if rows:
            echo(table([[text for text, _ in r] for r in rows], STATUS_COLUMNS), file=stream)
        for n in notes:
            echo(n, file=stream)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)
    table_ = Table(title=escape(title) + (f"[bold red]{kill_all}[/]" if kill_all else ""), title_justify="left",
                   box=None, pad_edge=False, header_style="bold")
    for col in STATUS_COLUMNS:
        table_.add_column(col, overflow="fold")
    for r in rows:
        table_.add_row(*[Text(text, style=style) for text, style in r])
    if rows:
        console.print(table_)
    else:
        console.print(Text(title + kill_all))
    for n in notes:
        console.print(Text(n))


def print_fleet_status(doc: dict[str, Any], stream: Any = None) -> None:
    """Plain text, grouped by repository (the same cells as ``status`` per loop)."""
    stream = stream or sys.stdout
    p = doc["portfolio"]
    cap = f"{p['cap']:,}" if p["cap"] else "no cap"
    pct = f" ({p['percent']}%)" if p["percent"] is not None else ""
    print(f"fleet {doc['fleet']} — portfolio {p['spent']:,} / {cap} tokens today{pct}: {p['state']}", file=stream)
    for repo in doc["repos"]:
        print("", file=stream)
        if repo.get("error"):
            print(f"== {repo['name']} ({repo['where']}): {repo['error']}", file=stream)
            continue
        print(f"== {repo['name']} ({repo['where']})", file=stream)
        print_status(repo, stream)
