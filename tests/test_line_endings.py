"""A read-modify-write keeps the user's bytes it did not mean to change: CRLF line endings and a
UTF-8 BOM survive (issue 10 §5/§6: never corrupt a user's run log or STATE.md)."""

from __future__ import annotations

from pathlib import Path

from loop_runtime.adapters import locked_files


def test_crlf_and_bom_survive_a_locked_update(tmp_path: Path) -> None:
    path = tmp_path / "loop-run-log.md"
    original = "\ufeff# Loop run log\r\n\r\nkeep me\r\n<!-- Loop appends below this line -->\r\n"
    path.write_bytes(original.encode("utf-8"))
    seen: list[str] = []

    def append(old: str | None) -> str:
        seen.append(old or "")
        return (old or "") + '{"run_id": "x"}\n'

    locked_files.update(tmp_path, path, append)
    assert seen == [original]  # the function sees the file as it is, \r\n included
    assert path.read_bytes() == (original + '{"run_id": "x"}\n').encode("utf-8")


def test_an_update_that_changes_nothing_writes_nothing_on_a_crlf_file(tmp_path: Path) -> None:
    path = tmp_path / "STATE.md"
    path.write_bytes(b"# State\r\n- a\r\n")
    before = path.stat().st_mtime_ns
    locked_files.update(tmp_path, path, lambda old: old)
    assert path.read_bytes() == b"# State\r\n- a\r\n" and path.stat().st_mtime_ns == before
