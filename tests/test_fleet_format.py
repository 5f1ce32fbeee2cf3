"""The fleet file (``loop-fleet.toml``): what it accepts, and one-line errors naming file, field and value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.errors import ConfigError
from loop_runtime.formats.fleet import MAX_CAP, parse_fleet, redact_url
from loop_runtime.formats.project_config import PatternConfig

EXAMPLE = """portfolio_daily_cap = 5000000
[[repos]]
path = "../api"
[[repos]]
url = "https://github.com/acme/web.git"
[repos.patterns.ci-sweeper]
level = "L2"
"""


def err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_fleet(text, file="loop-fleet.toml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("loop-fleet.toml: ")
    return msg


def test_the_issue_example_parses_with_names_derived_from_path_and_url() -> None:
    fleet = parse_fleet(EXAMPLE)
    assert fleet.portfolio_daily_cap == 5_000_000
    assert [(r.name, r.path, r.url) for r in fleet.repos] == [
        ("api", "../api", None), ("web", None, "https://github.com/acme/web.git")]
    web = fleet.repos[1]
    assert dict(web.patterns["ci-sweeper"]) == {"level": "L2"}
    own = PatternConfig(level="L1", cadence="1d", daily_cap=500)
    merged = web.pattern_config("ci-sweeper", own)
    assert (merged.level, merged.cadence, merged.daily_cap) == ("L2", "1d", 500)  # only the keys the fleet sets


@pytest.mark.parametrize("text, field", [
    ("", "repos"),
    ("repos = []", "repos"),
    ("[[repos]]\n", "repos[0]"),
    ('[[repos]]\npath = "a"\nurl = "https://h/o/r.git"\n', "repos[0]"),
    ('[[repos]]\npath = "a"\nbranch = "x"\n', "repos[0].branch"),
    ('colour = 1\n[[repos]]\npath = "a"\n', "colour"),
    ('name = "a b"\n[[repos]]\npath = "a"\n', "name"),  # the portfolio's name (a Temporal budget scope)
    ('name = 5\n[[repos]]\npath = "a"\n', "name"),
    ('name = "../x"\n[[repos]]\npath = "a"\n', "name"),
    ('portfolio_daily_cap = -5\n[[repos]]\npath = "a"\n', "portfolio_daily_cap"),
    ('portfolio_daily_cap = 0\n[[repos]]\npath = "a"\n', "portfolio_daily_cap"),
    (f'portfolio_daily_cap = {MAX_CAP + 1}\n[[repos]]\npath = "a"\n', "portfolio_daily_cap"),
    ('portfolio_daily_cap = 1.5\n[[repos]]\npath = "a"\n', "portfolio_daily_cap"),
    ('portfolio_daily_cap = true\n[[repos]]\npath = "a"\n', "portfolio_daily_cap"),
    ('portfolio_daily_usd = -1\n[[repos]]\npath = "a"\n', "portfolio_daily_usd"),
    ('portfolio_daily_usd = nan\n[[repos]]\npath = "a"\n', "portfolio_daily_usd"),
    ('[[repos]]\npath = "a"\ndaily_cap = -1\n', "repos[0].daily_cap"),
    ('[[repos]]\npath = ""\n', "repos[0].path"),
    ('[[repos]]\npath = "a\\u0000b"\n', "repos[0].path"),
    ('[[repos]]\npath = "a"\n[[repos]]\npath = "./a/"\nname = "b"\n', "repos[1].path"),
    ('[[repos]]\npath = "x/../a"\n[[repos]]\npath = "a"\nname = "b"\n', "repos[1].path"),
    ('[[repos]]\nurl = "https://h/o/r.git"\n[[repos]]\nurl = "https://H/o/r"\nname = "b"\n', "repos[1].url"),
    ('[[repos]]\npath = "x/a"\n[[repos]]\npath = "y/a"\n', "repos[1].name"),
    ('[[repos]]\npath = "a"\nname = "bad name"\n', "repos[0].name"),
    ('[[repos]]\npath = "/"\n', "repos[0].name"),
    ('[[repos]]\nurl = "ext::sh -c touch%20/tmp/x"\n', "repos[0].url"),
    ('[[repos]]\nurl = "ext::sh"\n', "repos[0].url"),
    ('[[repos]]\nurl = "--upload-pack=evil"\n', "repos[0].url"),
    ('[[repos]]\nurl = "https://github.com"\n', "repos[0].url"),
    ('[[repos]]\nurl = "file://remote/x.git"\n', "repos[0].url"),
    ('[[repos]]\npath = "a"\n[repos.patterns.ci-sweeper]\nlevel = "L9"\n', "repos[0].patterns.ci-sweeper.level"),
    ('[[repos]]\npath = "a"\n[repos.patterns.ci-sweeper]\nspeed = 1\n', "repos[0].patterns.ci-sweeper.speed"),
    ('[[repos]]\npath = "a"\n[repos.patterns.Bad_Id]\nlevel = "L1"\n', "repos[0].patterns"),
    ('work_dir = ""\n[[repos]]\npath = "a"\n', "work_dir"),
    ("[[repos]\n", "toml"),
])
def test_bad_input_is_one_line_naming_the_field(text: str, field: str) -> None:
    msg = err(text)
    assert field in msg, msg


@pytest.mark.parametrize("url", [
    "https://alice:s3cr3t-Tok3n@github.com/acme/web.git",
    "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/acme/web.git",
    "http://user:pa%40ss@git.example.com/x/y.git",
    "git://bob:hunter2@example.com/r.git",
    "ssh://git:hunter2@example.com/r.git",
    "alice:hunter2@example.com:org/repo.git",
])
def test_a_url_with_credentials_is_refused_and_the_secret_is_never_echoed(url: str) -> None:
    msg = err(f'[[repos]]\nurl = "{url}"\n')
    for secret in ("s3cr3t-Tok3n", "ghp_abcdefghijklmnopqrstuvwxyz", "pa%40ss", "hunter2"):
        assert secret not in msg
    assert "repos[0].url" in msg


@pytest.mark.parametrize("url", [
    "https://github.com/acme/web.git", "ssh://git@github.com/acme/web.git", "git@github.com:acme/web.git",
    "file:///srv/git/web.git", "git://example.com/web",
])
def test_ordinary_git_urls_are_accepted(url: str) -> None:
    assert parse_fleet(f'[[repos]]\nurl = "{url}"\n').repos[0].url == url


def test_redact_url_hides_userinfo_only() -> None:
    assert redact_url("https://a:b@h/x") == "https://***@h/x"
    assert redact_url("https://h/x@y") == "https://h/x@y"


names = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(names, min_size=1, max_size=6, unique=True), st.one_of(st.none(), st.integers(1, MAX_CAP)))
def test_any_set_of_distinct_repositories_round_trips(repo_names: list[str], cap: int | None) -> None:
    lines = [] if cap is None else [f"portfolio_daily_cap = {cap}"]
    for i, n in enumerate(repo_names):
        lines += ["[[repos]]", f'path = "../{n}"' if i % 2 else f'url = "https://git.example.com/org/{n}.git"']
    fleet = parse_fleet("\n".join(lines) + "\n")
    assert [r.name for r in fleet.repos] == repo_names
    assert fleet.portfolio_daily_cap == cap


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_either_parses_or_raises_one_config_error_line(text: str) -> None:
    try:
        parse_fleet(text)
    except ConfigError as e:
        assert "\n" not in str(e)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: '"' not in s and "\\" not in s))
def test_any_url_value_is_either_accepted_or_refused_on_one_line(value: str) -> None:
    try:
        parse_fleet(f'[[repos]]\nurl = "{value}"\nname = "r"\n')
    except ConfigError as e:
        assert "\n" not in str(e) and ("repos[0].url" in str(e) or "TOML syntax" in str(e))


secret = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~%", min_size=6,
                 max_size=40)


@settings(max_examples=200)
@given(st.sampled_from(["https", "http", "git", "ssh", ""]), secret,
       secret.filter(lambda p: p not in "loop-fleet.toml: repos[0].url invalid: example.com:org/repo.git"),
       st.sampled_from(["", "?x=1", "#f"]))
def test_no_shape_of_url_credentials_is_ever_echoed(scheme: str, user: str, password: str, tail: str) -> None:
    url = (f"{scheme}://{user}:{password}@example.com/org/repo.git" if scheme
           else f"{user}:{password}@example.com:org/repo.git") + tail
    try:
        parse_fleet(f'[[repos]]\nurl = "{url}"\nname = "r"\n')
    except ConfigError as e:
        assert password not in str(e) and password not in repr(e.value)
    else:
        raise AssertionError(f"accepted a URL with a password: {url!r}")
