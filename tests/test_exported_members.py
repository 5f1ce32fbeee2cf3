"""The public API is pinned: what `from loop_runtime import …` offers, and that it resolves."""

import loop_runtime


def test_exported_members() -> None:
    """__all__ lists exactly the library API of DESIGN.md plus the public fakes, and each name imports."""
    assert sorted(loop_runtime.__all__) == [
        "BudgetBreaker", "LoopEngine", "ManualClock", "MemoryStateWriter", "MemoryWorkspace", "MockBackend",
        "Plan", "TickDeps", "TickResult", "build_plan",
    ]
    for name in loop_runtime.__all__:
        assert getattr(loop_runtime, name).__name__ == name


def test_cli_start_up_imports_stay_light() -> None:
    """`loop-runtime list` must not import the engine, the store, rich, httpx or starlette."""
    import subprocess
    import sys

    code = ("import sys, loop_runtime.cli as c\n"
            "try:\n    c.main(['list'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('loop_runtime.core.engine', 'loop_runtime.adapters.store.sqlite', 'rich', "
            "'httpx', 'starlette', 'apprise', 'sqlite3') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:] + proc.stderr
