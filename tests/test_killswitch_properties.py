"""The kill switch's quick "is the token there at all" test never hides a flag line.

``core.killswitch._flag_in`` skips building a token's pattern when the token does not occur in
the text (case-insensitively). That shortcut must be invisible: on any text, the answer equals
the full pattern's answer, including texts whose letters only match the token under Unicode
case folding.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.core import killswitch

TOKENS = ["loop-pause-all", "loop-pause-ci-sweeper", "loop-pause-Daily-Triage"]


def _by_pattern_only(text: str, token: str) -> bool:
    for m in killswitch._line_re(token).finditer(text):
        value = (m.group(1) or "").lower()
        if value in killswitch._TRUE:
            return True
        if value in killswitch._FALSE:
            continue
    return False


def _variants(token: str) -> st.SearchStrategy[str]:
    """The token in mixed case, with a Kelvin sign or long s where the case folds allow it."""
    def mix(flags: list[bool]) -> str:
        out = []
        for ch, up in zip(token, flags, strict=False):
            out.append(ch.upper() if up else ch)
        return "".join(out) + token[len(flags):]
    return st.lists(st.booleans(), max_size=len(token)).map(mix).map(
        lambda t: t.replace("s", "\u017f", 1) if "s" in t else t)


line = st.one_of(
    st.sampled_from(TOKENS).flatmap(lambda t: st.tuples(
        st.sampled_from(["", "- ", "* ", "- [x] ", "  "]), _variants(t),
        st.sampled_from(["", ": true", ": off", ": 1", ": no", "`", " and more prose"])).map("".join)),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=6).map("\n".join), st.sampled_from(TOKENS))
def test_the_shortcut_answers_as_the_full_pattern(text: str, token: str) -> None:
    assert killswitch._flag_in(text, token) == _by_pattern_only(text, token)


def test_a_flag_line_in_another_case_still_pauses() -> None:
    assert killswitch._flag_in("notes\n- LOOP-PAUSE-ALL: yes\n", "loop-pause-all")
    assert not killswitch._flag_in("set `loop-pause-all` to pause\n", "loop-pause-all")
