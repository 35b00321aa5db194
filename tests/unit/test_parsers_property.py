"""Property tests of cutover's parsers (issue 15): whatever the input, each parser either
returns its value or raises the one error it documents (InvalidInput naming the file for the
operator's files, UnexpectedOutput naming the command for a tool's output), never another
exception. Each failure hypothesis found is also an explicit regression test below the
properties (``test_regression_*``).

Example counts are kept modest so the file runs in well under a minute on a loaded machine;
``deadline=None`` because timing on a shared 2-core machine is not what is under test.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import dns.name
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.adapters.convoxparse import parse_info, parse_table
from cutover.adapters.heroku import check_config, check_items, parse_formation, parse_json
from cutover.adapters.postgres import ConnInfo
from cutover.engine.context import split_server
from cutover.errors import CutoverError, InvalidInput, UnexpectedOutput
from cutover.playbook import load_playbook
from cutover.runner import Result
from cutover.translate.appjson import parse_app_json
from cutover.translate.facts import facts_from_heroku_json
from cutover.translate.herokuyml import parse_heroku_yml
from cutover.translate.procfile import parse_procfile
from cutover.translate.shell import convert_command
from cutover.ui import visible

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
# Keys a playbook, app.json or heroku output really has, so the generated documents get past
# the first type check and exercise the field checks.
PLAYBOOK_KEYS = [
    "version", "heroku", "convox", "app", "rack", "manifest", "dns", "zone", "record",
    "server", "ttl", "provider", "nameservers", "resolvers", "database", "window", "timeout",
    "env", "exclude", "smoke", "service", "tls", "notify", "release", "state_dir",
]  # fmt: skip
APP_JSON_KEYS = [
    "name", "env", "formation", "addons", "scripts", "buildpacks", "stack", "plan", "as",
    "options", "quantity", "size", "required", "value", "generator", "postdeploy", "web",
]  # fmt: skip
HEROKU_KEYS = [
    "name", "addon_service", "plan", "config_vars", "attachments", "app", "type", "state",
    "command", "size", "hostname", "kind", "cname",
]  # fmt: skip


def keyed(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), inner, max_size=5),
        ),
        max_leaves=25,
    )


def result(stdout: str, *argv: str) -> Result:
    return Result(list(argv) or ["heroku", "x", "--json", "-a", "myapp"], 0, stdout, "", 0.0)


# -- playbooks -----------------------------------------------------------------------------


def load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cutover.yml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_playbook(path)
        except InvalidInput as exc:
            assert str(path.resolve()) in str(exc) or str(path) in str(exc), str(exc)


@FEW
@given(st.text(max_size=400))
def test_any_text_is_a_playbook_or_invalid_input_naming_the_file(text: str) -> None:
    load_text(text)


@SOME
@given(keyed(PLAYBOOK_KEYS))
def test_any_yaml_document_is_a_playbook_or_invalid_input(doc: Any) -> None:
    load_text(yaml.safe_dump(doc))


@SOME
@given(
    st.fixed_dictionaries(
        {"heroku": st.fixed_dictionaries({"app": st.just("myapp")})},
        optional={
            "convox": keyed(PLAYBOOK_KEYS),
            "dns": st.fixed_dictionaries(
                {"zone": st.text(max_size=20), "record": st.text(max_size=30)},
                optional={
                    "server": st.text(max_size=25),
                    "ttl": scalars,
                    "nameservers": st.lists(st.text(max_size=20), max_size=3),
                },
            ),
            "window": keyed(PLAYBOOK_KEYS),
            "version": scalars,
        },
    )
)
def test_near_valid_playbooks_load_or_are_refused(doc: Any) -> None:
    load_text(yaml.safe_dump({"convox": {"app": "myapp"}, **doc}))


# -- DNS names and servers -----------------------------------------------------------------

labels = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.*" + "\t\x00é", max_size=70)


@SOME
@given(st.lists(labels, min_size=1, max_size=5))
def test_an_accepted_dns_record_is_a_valid_dns_name(parts: list[str]) -> None:
    """What the playbook accepts as dns.zone and dns.record, dnspython can make a name of (the
    rfc2136, route53 and cloudflare adapters and the checks all do)."""
    zone = parts[-1]
    record = ".".join(parts)
    text = yaml.safe_dump(
        {
            "heroku": {"app": "myapp"},
            "convox": {"app": "myapp"},
            "dns": {"zone": zone, "record": record, "provider": "route53"},
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cutover.yml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_playbook(path)
        except InvalidInput:
            return
    dns_section = loaded.model.dns
    assert dns_section is not None
    for name in (dns_section.zone, dns_section.record):
        dns.name.from_text(name)  # raises on an empty or over-long label or name


@SOME
@given(
    st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda h, p: f"{h}:{p}",
            st.text(alphabet=string.ascii_letters + string.digits + ".-[]:", max_size=20),
            st.integers(min_value=-5, max_value=10**7),
        ),
    )
)
def test_an_accepted_dns_server_splits_into_host_and_a_port(server: str) -> None:
    text = yaml.safe_dump(
        {
            "heroku": {"app": "myapp"},
            "convox": {"app": "myapp"},
            "dns": {"zone": "example.com", "record": "www.example.com", "server": server},
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cutover.yml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_playbook(path)
        except InvalidInput:
            return
    assert loaded.model.dns is not None and loaded.model.dns.server is not None
    host, port = split_server(loaded.model.dns.server)
    assert host
    assert 1 <= port <= 65535


# -- Procfile, app.json, commands ----------------------------------------------------------

procfile_lines = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda n, c: f"{n}: {c}",
            st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=8),
            st.text(max_size=60),
        ),
    ),
    max_size=8,
)


@SOME
@given(procfile_lines, st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_procfile_parses_or_is_invalid_input_naming_it(lines: list[str], end: str) -> None:
    try:
        processes, release = parse_procfile(end.join(lines), "Procfile")
    except InvalidInput as exc:
        assert str(exc).startswith("Procfile"), str(exc)
        return
    names = [p.name for p in processes] + (["release"] if release else [])
    assert len(names) == len(set(names))  # duplicate process types are refused


@SOME
@given(st.text(max_size=200))
def test_any_process_command_converts_or_is_invalid_input(command: str) -> None:
    try:
        convert_command(command, port=5000, subject="web", where="Procfile", line=1)
    except InvalidInput as exc:
        assert "Procfile" in str(exc)


@SOME
@given(st.one_of(st.text(max_size=200), keyed(APP_JSON_KEYS).map(json.dumps)))
def test_any_app_json_parses_or_is_invalid_input_naming_it(text: str) -> None:
    try:
        parse_app_json(text, "app.json")
    except InvalidInput as exc:
        assert str(exc).startswith("app.json"), str(exc)


HEROKU_YML_KEYS = [
    "setup", "build", "release", "run", "docker", "config", "addons", "plan", "as", "image",
    "command", "web", "worker", "packages", "languages", "stack",
]  # fmt: skip


@SOME
@given(st.one_of(st.text(max_size=200), keyed(HEROKU_YML_KEYS).map(yaml.safe_dump)))
def test_any_heroku_yml_parses_or_is_invalid_input_naming_it(text: str) -> None:
    try:
        parse_heroku_yml(text, "heroku.yml")
    except InvalidInput as exc:
        assert str(exc).startswith("heroku.yml"), str(exc)


@SOME
@given(
    keyed(HEROKU_KEYS),
    st.lists(keyed(HEROKU_KEYS), max_size=3),
    st.lists(keyed(HEROKU_KEYS), max_size=3),
    st.one_of(st.text(max_size=40), st.lists(keyed(HEROKU_KEYS), max_size=3)),
)
def test_translate_facts_from_any_heroku_json_or_invalid_input(
    info: Any, addons: list[Any], domains: list[Any], formation: Any
) -> None:
    """translate's own reading of the same outputs (cutover/translate/facts.py)."""
    info = info if isinstance(info, dict) else {"app": info}
    try:
        facts = facts_from_heroku_json(info, addons, [], domains, formation)
    except InvalidInput as exc:
        assert str(exc).startswith("heroku "), str(exc)  # names the command it read
        return
    assert all(isinstance(a.service, str) and isinstance(a.name, str) for a in facts.addons)
    assert all(isinstance(d.hostname, str) for d in facts.domains)


# -- CLI output parsers ----------------------------------------------------------------------


@SOME
@given(st.one_of(st.text(max_size=200), keyed(HEROKU_KEYS).map(json.dumps)))
def test_heroku_json_outputs_parse_or_name_the_command(stdout: str) -> None:
    for what in ("addons", "ps", "domains", "config"):
        out = result(stdout, "heroku", what, "--json", "-a", "myapp")
        try:
            data = parse_json(out, what)
            checked = check_config(data, out) if what == "config" else check_items(data, out, what)
        except UnexpectedOutput as exc:
            assert f"heroku {what} --json -a myapp" in str(exc), str(exc)
            continue
        if what == "config":
            assert isinstance(checked, dict)
            assert all(isinstance(v, str) for v in checked.values())
        elif what == "addons":
            # What the steps then read with .get chains (steps/app.py, preflight.py, freeze.py,
            # translate/cli.py) works on every item.
            assert isinstance(checked, list)
            for item in checked:
                assert isinstance(item, dict)
                str((item.get("addon_service") or {}).get("name", ""))
                [str(v) for v in item.get("config_vars") or []]
                [a.get("name") for a in item.get("attachments") or []]


@SOME
@given(st.text(max_size=300))
def test_heroku_formation_parses_or_is_unexpected_output(text: str) -> None:
    try:
        for entry in parse_formation(text):
            assert entry.quantity >= 0
    except UnexpectedOutput as exc:
        assert "heroku ps:scale" in str(exc)


table_text = st.lists(
    st.lists(
        st.sampled_from(["ID", "STATUS", "BUILD", "RELEASE", "x", "", "  ", "RABC", "é"])
        | st.text(max_size=12),
        max_size=6,
    ).map("  ".join),
    max_size=6,
).map("\n".join)


@SOME
@given(st.one_of(st.text(max_size=300), table_text))
def test_convox_tables_parse_or_name_the_command(text: str) -> None:
    try:
        rows = parse_table(text, ["ID", "STATUS", "BUILD"], "convox releases -a app")
    except UnexpectedOutput as exc:
        assert "convox releases -a app printed no table" in str(exc)
        return
    for row in rows:
        assert {"ID", "STATUS", "BUILD"} <= set(row)


@SOME
@given(st.text(max_size=300))
def test_convox_info_blocks_always_parse(text: str) -> None:
    info = parse_info(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())


@SOME
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(
            lambda u, p, h, port, d: f"postgres://{u}:{p}@{h}:{port}/{d}",
            st.text(max_size=8),
            st.text(max_size=8),
            st.text(max_size=12),
            st.text(max_size=7),
            st.text(max_size=8),
        ),
    )
)
def test_database_urls_parse_or_are_refused(url: str) -> None:
    try:
        conn = ConnInfo.from_url(url)
    except CutoverError:
        return
    assert 0 <= conn.port <= 65535


@SOME
@given(st.text(max_size=200))
def test_visible_leaves_no_terminal_control(text: str) -> None:
    shown = visible(text)
    assert all(
        c in "\n\t" or not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u202a\u202e")
        for c in shown
    )


# -- regressions: what the properties found, each as an explicit case ----------------------


@pytest.mark.parametrize(
    ("zone", "record"),
    [
        ("example.com", "a..example.com"),  # an empty label
        ("example.com", "x" * 64 + ".example.com"),  # a label over 63 characters
        ("example.com", "a\tb.example.com"),  # a tab inside a label
        ("example.com", "\x00.example.com"),  # a NUL
    ],
)
def test_regression_dns_names_dnspython_cannot_read_are_refused(
    tmp_path: Path, zone: str, record: str
) -> None:
    path = tmp_path / "cutover.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "heroku": {"app": "myapp"},
                "convox": {"app": "myapp"},
                "dns": {"zone": zone, "record": record},
            }
        )
    )
    with pytest.raises(InvalidInput, match=r"dns\.record"):
        load_playbook(path)


def test_regression_app_json_with_an_over_long_number_is_invalid_input() -> None:
    # json.loads raises a plain ValueError (Python's int digit limit), not JSONDecodeError.
    with pytest.raises(InvalidInput, match=r"app\.json"):
        parse_app_json('{"formation": {"web": {"quantity": 1' + "0" * 5000 + "}}}")


@pytest.mark.parametrize("url", ["A://[", "postgres://u:p@[]:5432/d", "postgres://u:p@[zz]/d"])
def test_regression_a_database_url_with_a_bad_bracketed_host_is_refused(url: str) -> None:
    # urllib.parse.urlsplit raises ValueError ("Invalid IPv6 URL") before any scheme check.
    with pytest.raises(CutoverError, match="not a PostgreSQL URL"):
        ConnInfo.from_url(url)
