"""Start-up: `list` and `status` answered without click, and nothing they show changes for it.

The console entry point (``loop_runtime.quick:main``) runs ``list``/``status`` directly when
argv is plainly one of them and defers everything else to the click CLI. These tests pin
that both paths print the same bytes and exit codes, that anything unusual goes to click,
and that the shortcuts under it (the bundled registry's JSON cache, libyaml, the
store-timestamp reader) give exactly what the slow paths gave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.adapters import project_files as files
from loop_runtime.adapters.store.schema import parse_ts, to_ts
from loop_runtime.errors import ConfigError
from loop_runtime.formats import registry as reg
from loop_runtime.quick import fast_request

FAST = "from loop_runtime.quick import main\nmain()\n"
CLICK = "from loop_runtime.cli import main\nmain()\n"


def _run(code: str, args: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LOOP_PROJECT_ROOT"}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)
    out = "\n".join(line for line in proc.stdout.splitlines() if '"generatedAt"' not in line)
    return proc.returncode, out, proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two loops with history: one real mock tick in the store, other tools' runs in the log."""
    root = tmp_path_factory.mktemp("startup")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    (root / "ci-sweeper-state.md").write_text("# CI Sweeper State\n")
    (root / "LOOP.md").write_text("## Active Loops\n\n| Pattern | Cadence | Status |\n|---|---|---|\n"
                                  "| daily-triage | 1d | L1 |\n")
    proc = subprocess.run([sys.executable, "-m", "loop_runtime", "run", "ci-sweeper", "--scenario", "report-only",
                           "--log-format", "none"], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    now = datetime.now(UTC).replace(microsecond=0)
    lines = [json.dumps({"run_id": (now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "pattern": "daily-triage", "tokens_estimate": 1000 + h, "outcome": "report-only"})
             for h in range(0, 72, 7)]
    with open(root / "loop-run-log.md", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    (root / "a-file").write_text("x")
    return root


ARGVS = [
    ["list"], ["list", "--json"], ["status"], ["status", "--json"],
    ["--root", ".", "list"], ["list", "--root", "."], ["--root=.", "status", "--json"],
    ["--root", "nowhere", "list"], ["status", "--root", "nowhere"], ["--root", "a-file", "list"],
    ["--root", "", "status"], ["--root", "nowhere", "--root", ".", "status"], ["list", "--json", "--json"],
    ["list", "--help"], ["--help"], ["list", "--bogus"], ["status", "extra"], ["--json", "list"], ["list", "--root"],
    ["statu"], [], ["--version"], ["list", "--", "x"],
]


@pytest.mark.parametrize("args", ARGVS, ids=[" ".join(a) or "(none)" for a in ARGVS])
def test_the_fast_entry_point_prints_what_the_click_cli_prints(project: Path, args: list[str]) -> None:
    assert _run(FAST, args, project) == _run(CLICK, args, project)


def test_python_dash_m_uses_the_fast_entry_point_and_the_script_too(project: Path) -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["loop-runtime"] == "loop_runtime.quick:main"
    main = (Path(__file__).parent.parent / "src" / "loop_runtime" / "__main__.py").read_text()
    assert "from .quick import main" in main


@pytest.mark.parametrize("command", ["list", "status"])
def test_list_and_status_import_neither_click_nor_yaml(project: Path, command: str) -> None:
    """The point of the fast path: `list` pays for no CLI framework and no YAML reader (bundled registry),
    and neither pays for `typing` (its protocols are for type checkers) nor for what only `run` needs."""
    code = ("import sys\nsys.argv = ['loop-runtime', %r]\nfrom loop_runtime.quick import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('click', 'yaml', 'rich', 'httpx', 'asyncio', 'starlette', 'tomllib',"
            " 'loop_runtime.core.engine', 'loop_runtime.cli.group', 'loop_runtime.cli.entry', 'typing',"
            " 'loop_runtime.ports.budget', 'loop_runtime.app.run', 'loop_runtime.formats.git_remote')"
            " if m in sys.modules))\n") % command
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120)
    assert "LOADED []" in proc.stdout, proc.stdout[-800:] + proc.stderr


@pytest.mark.parametrize("args", [["list"], ["status", "--json"], ["--root", "x", "list"], ["list", "--root=y"],
                                  ["--root", "a", "status", "--root", "b", "--json"]])
def test_plain_list_and_status_take_the_fast_path(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_LOOP_RUNTIME_COMPLETE", raising=False)
    request = fast_request(args)
    assert request is not None and request[0] == next(a for a in args if a in ("list", "status"))
    roots = [a.split("=", 1)[1] if a.startswith("--root=") else args[i + 1]
             for i, a in enumerate(args) if a.startswith("--root")]
    assert request[1] == (roots[-1] if roots else None)  # the later --root wins, as in click


@given(st.lists(st.sampled_from(["list", "status", "--json", "--root", "--root=", "-h", "--help", "plan", "x", "-",
                                 "--", "--jso", "--root=-x", "--version", "-p", ""]), max_size=6))
def test_anything_unusual_is_left_to_click(args: list[str]) -> None:
    """Only `[--root DIR]* (list|status) [--json|--root DIR]*` goes fast; every other token defers to click."""
    request = fast_request(args)
    if request is None:
        return
    command, _root, _json = request
    assert args.count("list") + args.count("status") >= 1
    allowed = {"list", "status", "--json", "--root"}
    for i, a in enumerate(args):
        previous = args[i - 1] if i else None
        assert a in allowed or previous == "--root" or (a.startswith("--root=") and len(a) > 7), args
    assert "--help" not in args and "-h" not in args


def test_completion_mode_is_left_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_LOOP_RUNTIME_COMPLETE", "bash_complete")
    assert fast_request(["list"]) is None


# ---------------------------------------------------------------------------- the bundled registry's cache


def test_the_bundled_registry_cache_is_current() -> None:
    """Regenerate with `python scripts/bundle_registry.py` when this fails (the stale cache is not used anyway)."""
    raw = files.BUNDLED_REGISTRY.read_bytes()
    cache = json.loads(files.BUNDLED_CACHE.read_text(encoding="utf-8"))
    assert cache["source"] == reg.source_stamp(raw)
    assert cache["document"] == yaml.safe_load(raw.decode("utf-8"))


def test_the_cached_registry_is_the_yaml_registry(tmp_path: Path) -> None:
    via_cache = files.load_registry(tmp_path)
    via_yaml = reg.parse_registry(files.BUNDLED_REGISTRY.read_text(encoding="utf-8"),
                                  file=str(files.BUNDLED_REGISTRY), source="bundled")
    assert via_cache == via_yaml


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("cadence: 1d", "cadence: 2d", 1),
    lambda t: t + "\n",
    lambda t: t.replace("daily-triage", "daily-triaje"),
])
def test_an_edited_registry_yaml_is_read_as_yaml_not_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    edit) -> None:
    copy = tmp_path / "data" / "registry.yaml"
    copy.parent.mkdir()
    text = edit(files.BUNDLED_REGISTRY.read_text(encoding="utf-8"))
    copy.write_text(text, encoding="utf-8")
    monkeypatch.setattr(files, "BUNDLED_REGISTRY", copy)  # the real, now stale, cache stays in place
    got = files.load_registry(tmp_path)
    assert got == reg.parse_registry(text, file=str(copy), source="bundled")


@pytest.mark.parametrize("cache", [None, [], {}, {"source": None}, {"source": {"bytes": 1, "crc32": 2}, "document": 1},
                                   "text"])
def test_a_cache_for_other_bytes_or_of_another_shape_is_ignored(cache: object) -> None:
    assert reg.bundled_document(files.BUNDLED_REGISTRY.read_bytes(), cache) is None


def test_a_broken_cache_file_falls_back_to_the_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "registry.json"
    broken.write_text("{not json")
    monkeypatch.setattr(files, "BUNDLED_CACHE", broken)
    assert files.load_registry(tmp_path).ids() == reg.parse_registry(
        files.BUNDLED_REGISTRY.read_text(encoding="utf-8")).ids()


# ---------------------------------------------------------------------------- libyaml, with the pure loader's verdicts

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                     st.dates())
_docs = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)


@given(_docs)
def test_the_libyaml_reading_equals_the_pure_reading(doc: object) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    assert reg._load_yaml(text, "f.yaml") == yaml.safe_load(text)


@given(st.text(alphabet=st.sampled_from(list("ab:- \n\t'\"[]{}#&*!|>%@`,?\\0123\u00e9\ufeff\x07")), max_size=40))
def test_any_text_but_a_mapping_reads_as_the_pure_loader_reads_it(text: str) -> None:
    """Same value, or the same one-line error: the pure loader decides unless libyaml reads a mapping."""
    try:
        if isinstance(yaml.load(text, Loader=yaml.CSafeLoader), dict):
            return  # libyaml's reading stands (covered for well-formed documents above)
    except Exception:
        pass
    try:
        want: object = ("ok", yaml.safe_load(text))
    except Exception:
        want = "error"
    try:
        got: object = ("ok", reg._load_yaml(text, "f.yaml"))
    except ConfigError as exc:
        got = "error"
        assert str(exc).startswith("f.yaml: ") and "\n" not in str(exc)
    if want != "error" and got != "error":
        assert got == want or (got[1] != got[1] and want[1] != want[1])  # NaN is never equal to itself
    else:
        assert got == want


# ---------------------------------------------------------------------------- the store's timestamps


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_store_timestamps_read_back_exactly(when: datetime) -> None:
    aware = when.replace(tzinfo=UTC)
    assert parse_ts(to_ts(aware)) == aware
    assert parse_ts(to_ts(aware)) == datetime.strptime(to_ts(aware), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-02-30T00:00:00.000000Z", "2026-13-01T00:00:00.000000Z",
                                  "2026-01-01T24:00:00.000000Z", "2026-01-01T00:00:61.000000Z", "nonsense"])
def test_impossible_store_timestamps_fail_as_before(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+02:00", "2026-01-01",
                                  "2026-01-01T00:00:00.5Z"])
def test_other_iso_forms_still_read(text: str) -> None:
    want = datetime.fromisoformat(text)
    want = want.replace(tzinfo=UTC) if want.tzinfo is None else want.astimezone(UTC)
    assert parse_ts(text) == want
