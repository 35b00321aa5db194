"""Review of issue 8: what Heroku's bash and dynos do that the first translation lost, each
shown by running the translated command the way Convox does (tests/translate/convox_argv.py:
convox.yml interpolation, go-shellquote split, exec) next to Heroku's `bash -c`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from convox_argv import convox_argv, split
from runtime_helpers import SERVER as _SERVER
from runtime_helpers import (
    assert_server_is_main_process_and_drains as _assert_server_is_main_process_and_drains,
)
from runtime_helpers import command_of as _command
from runtime_helpers import translate_files as _translate

from cutover.translate import TranslateOptions, read_sources, translate
from cutover.translate.shell import convert_command

# -- review: what bash expands that go-shellquote does not ----------------------------------------


def test_leading_tilde_is_expanded_by_a_shell_and_home_is_named(tmp_path: Path) -> None:
    """bash(1), Tilde Expansion: `~/bin/start` is `$HOME/bin/start` under Heroku's bash;
    go-shellquote (convox provider/k8s/process.go) leaves `~` alone, so Convox would exec a file
    literally named `~/bin/start`. And HOME is /app on a dyno (Dev Center, "Dyno Startup
    Behavior": `$HOME/.profile` is the app's file), not what an image's HOME usually is."""
    manifest, codes = _translate(tmp_path, {"Procfile": "web: ~/bin/start --port $PORT\n"})
    command = _command(manifest, "web")
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "start").write_text('#!/bin/sh\necho "$@"\n')
    (home / "bin" / "start").chmod(0o755)
    ran = subprocess.run(
        shlex.split(command),
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "--port 3000"
    assert "boot-home" in codes


@pytest.mark.parametrize(
    ("line", "wrapped"),
    [
        ("~/bin/run", True),
        ("bin/run --dir ~/data", True),
        ("env ROOT=~/x bin/run", True),
        ("bin/run '~/x'", False),  # quoted: bash leaves it too
        ('bin/run "~/x"', False),
        ("bin/run --path=a~b", False),  # not at the start of a word
    ],
)
def test_tilde_words_need_a_shell(line: str, wrapped: bool) -> None:
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    assert result.command.startswith(("sh -c ", "bash -c ")) is wrapped, result.command
    if not wrapped:
        assert result.command == line


def test_then_branch_server_is_execd_too(tmp_path: Path) -> None:
    """`test -f x && gunicorn a || gunicorn b`: when the test succeeds the shell runs
    `gunicorn a` and waits for it (bash(1), Lists: `&&`/`||` are left-associative), so only
    exec'ing the fallback left the shell as PID 1 in the common case, with no finding."""
    manifest, codes = _translate(
        tmp_path, {"Procfile": "web: test -f ready && gunicorn a:app || gunicorn b:app\n"}
    )
    command = _command(manifest, "web")
    assert command == "sh -c 'test -f ready && exec gunicorn a:app || exec gunicorn b:app'"
    assert "command-no-exec" not in codes
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gunicorn").write_text(_SERVER.format(python=sys.executable))
    (bin_dir / "gunicorn").chmod(0o755)
    (tmp_path / "ready").write_text("")  # the test passes: the then-branch server runs
    _assert_server_is_main_process_and_drains(command, tmp_path, bin_dir)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("migrate && seed && srv a || srv b", "migrate && seed && exec srv a || exec srv b"),
        ("a; test -n x && FOO=1 srv || srv2", "a; test -n x && exec env FOO=1 srv || exec srv2"),
        ("a || b && srv", "a || b && exec srv"),  # ((a || b) && srv): only srv is last
        ("a || srv", "a || exec srv"),  # a is no then-branch
        ("t && exec s || exec f", "t && exec s || exec f"),
    ],
)
def test_exec_goes_to_every_command_that_can_be_last(line: str, expected: str) -> None:
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    assert shlex.split(result.command) == ["sh", "-c", expected]


def test_app_profile_scripts_get_a_finding_naming_what_they_export(tmp_path: Path) -> None:
    """Dev Center, "Dyno Startup Behavior": a dyno runs `$HOME/.profile` with bash before the
    command (and `.profile.d/*.sh`, Buildpack API); Convox execs the command directly, so an
    app whose command relies on a variable its .profile exports would silently read ''."""
    _manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: bin/web --root $APP_ROOT\n",
            ".profile": "# vendor binaries\nexport PATH=$PATH:$HOME/vendor/bin\nAPP_ROOT=$HOME\n",
            ".profile.d/jdk.sh": "export JAVA_HOME=/app/.jdk\n",
        },
    )
    assert "profile-script" in codes
    result = translate(read_sources(tmp_path), None, TranslateOptions())
    finding = next(f for f in result.findings if f.code == "profile-script")
    assert finding.subject == ".profile, .profile.d/jdk.sh"
    assert finding.message.endswith("what it sets is missing: PATH, APP_ROOT, JAVA_HOME")
    assert ". ./.profile && exec COMMAND" in finding.advice


def test_no_profile_no_finding(tmp_path: Path) -> None:
    _manifest, codes = _translate(tmp_path, {"Procfile": "web: bin/web\n", "profile": "x=1\n"})
    assert "profile-script" not in codes


def test_node_modules_programs_get_a_path_finding(tmp_path: Path) -> None:
    """heroku-buildpack-nodejs profile/nodejs.sh exports PATH=...:$HOME/node_modules/.bin on
    every dyno, so `web: next start -p $PORT` works on Heroku; exec in an image built with
    `npm ci` finds no `next` on PATH. Programs that are not package binaries get no finding."""
    _manifest, codes = _translate(
        tmp_path,
        {
            "Procfile": "web: next start -p $PORT\n"
            "worker: cd worker && NODE_ENV=production ts-node src/index.ts\n"
            "clock: node clock.js\n",
            "package.json": '{"dependencies": {"next": "14"}, '
            '"devDependencies": {"ts-node": "10"}}',
        },
    )
    result = translate(read_sources(tmp_path), None, TranslateOptions())
    flagged = {f.subject: f.message for f in result.findings if f.code == "command-node-bin"}
    assert set(flagged) == {"web", "worker"}
    assert flagged["worker"].startswith("ts-node runs from node_modules/.bin")
    assert codes.count("command-node-bin") == 2


def test_node_bin_finding_needs_the_package(tmp_path: Path) -> None:
    _manifest, codes = _translate(
        tmp_path,
        {"Procfile": "web: next start\n", "package.json": '{"dependencies": {"express": "4"}}'},
    )
    assert "command-node-bin" not in codes


@pytest.mark.parametrize(
    ("line", "execd"),
    [
        ("node server.js | tee -a log.txt", False),
        ("while true; do python job.py; sleep 60; done", False),
        ("migrate && gunicorn app", True),
    ],
)
def test_shell_finding_claims_exec_only_when_it_happened(line: str, execd: bool) -> None:
    """The command-shell finding said "its last command exec'd" even next to command-no-exec
    (a pipeline, a loop): a reader skimming the changes was told the server gets SIGTERM."""
    result = convert_command(line, port=3000, subject="worker", where="Procfile", line=1)
    shell = next(f for f in result.findings if f.code == "command-shell")
    assert ("exec'd" in shell.message and "nothing" not in shell.message) is execd
    assert any(f.code == "command-no-exec" for f in result.findings) is not execd


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("exec bin/server -p $PORT", "bin/server -p 3000"),
        ("exec FOO=1 bin/server", "env FOO=1 bin/server"),
        ("exec bin/server $PORT && x", "sh -c 'exec bin/server 3000 && exec x'"),
    ],
)
def test_leading_exec_without_a_shell_is_dropped(line: str, expected: str) -> None:
    """`web: exec bin/server`: on Heroku bash runs the builtin; Convox splits the line and
    execs argv[0], a program named `exec` that no image has (exit 127 / "executable file not
    found"). Without a shell the server already is PID 1, so the word goes."""
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    assert result.command == expected
    assert shlex.split(result.command)[0] != "exec"


def test_java_home_is_a_boot_variable_not_an_unknown_one(tmp_path: Path) -> None:
    """heroku-buildpack-jvm-common opt/jvmcommon.sh exports JAVA_HOME=$HOME/.jdk on every dyno:
    `${JAVA_HOME}/bin/java` was reported as a variable "no source declares"."""
    _manifest, codes = _translate(
        tmp_path, {"Procfile": "web: ${JAVA_HOME}/bin/java -jar target/app.jar\n"}
    )
    assert "boot-variable-missing" in codes
    assert "command-variable-unknown" not in codes


@pytest.mark.parametrize(
    "line",
    [
        'worker: [ "$MODE" == "fast" ] && exec echo fast || exec echo slow',
        'worker: test "$MODE" == fast && exec echo fast || exec echo slow',
        'worker: read -r M <<< "$MODE"; [ "$M" = fast ] && exec echo fast || exec echo slow',
    ],
)
def test_bash_tests_and_here_strings_keep_bash(tmp_path: Path, line: str) -> None:
    """`[ a == b ]` and `<<<` work under Heroku's bash; dash (Debian's sh) says "unexpected
    operator" / "redirection unexpected" and the line silently takes its `||` branch. Run as
    Convox would (split, exec) with MODE=fast: the translation must print "fast"."""
    manifest, codes = _translate(tmp_path, {"Procfile": line + "\n"})
    command = _command(manifest, "worker")
    env = {"MODE": "fast", "PATH": "/usr/bin:/bin"}
    ran = subprocess.run(shlex.split(command), env=env, capture_output=True, text=True)
    assert ran.stdout.strip() == "fast", (command, ran.stderr)
    assert "command-needs-bash" in codes
    script = shlex.split(command)[2]
    under_dash = subprocess.run(["dash", "-c", script], env=env, capture_output=True, text=True)
    assert under_dash.stdout.strip() != "fast"  # the control: why sh -c was wrong


def test_single_equals_test_stays_posix() -> None:
    result = convert_command(
        '[ "$A" = b ] && x --flag==y', port=3000, subject="w", where="Procfile", line=1
    )
    assert result.command.startswith("sh -c ")


_K8S_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035 label (Kubernetes)


def test_service_names_are_kubernetes_labels(tmp_path: Path) -> None:
    """Process types Heroku accepts (`[A-Za-z0-9_-]+`) that end in `_`/`-` became service names
    ending in `-`: convox validate.go accepts them, Kubernetes refuses the Deployment the rack
    names after the service (provider/k8s/template/app/service.yml.tmpl)."""
    manifest, _codes = _translate(
        tmp_path, {"Procfile": "web: a\nworker_: b\n_clock: c\n2fa-: d\n"}
    )
    services = manifest["services"]
    assert isinstance(services, dict)
    assert sorted(services) == ["p--clock", "p-2fa", "web", "worker"]
    assert all(_K8S_LABEL.match(name) for name in services)


def _run_as_convox(command: str, env: dict[str, str]) -> str:
    """convox.yml's ``${...}`` interpolation from the app env over the raw text, then
    go-shellquote's split and exec without a shell (tests/translate/convox_argv.py)."""
    argv = convox_argv(command, env)
    ran = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, (argv, ran.stderr)
    return ran.stdout


@pytest.mark.parametrize(
    "line",
    [
        "printf '%s\\n' --format '${level} ${msg}'",
        "printf '%s\\n' '${a}' \"$X\"",
        "printf '%s\\n' 'it'\\''s ${b}' \"${A:-x}\"",
        "printf '%s\\n' \"a '${X}' b\"",  # in double quotes bash expands it: stays a variable
    ],
)
def test_single_quoted_braces_reach_the_program_literally(tmp_path: Path, line: str) -> None:
    """`'${level}'` is literal under Heroku's bash; convox.yml interpolates every `${...}` in
    the raw text, so the program got '' (or, once wrapped in sh -c, `$level`), silently."""
    env = {"X": "1", "PATH": "/usr/bin:/bin"}
    heroku = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True)
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    # convox.yml environment defaults apply where the app env lacks the name
    assert _run_as_convox(result.command, {**result.defaults, **env}) == heroku.stdout


@pytest.mark.parametrize(
    "line",
    [
        "sh -c 'printf \"%s\\n\" ${X}'",  # a script: ${X} expands in the inner shell
        'cd / && bash -c \'printf "%s\\n" "${X}"\'',
    ],
)
def test_braces_in_a_nested_shell_script_stay_expansions(line: str) -> None:
    env = {"X": "1", "PATH": "/usr/bin:/bin"}
    heroku = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True)
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    assert _run_as_convox(result.command, {**result.defaults, **env}) == heroku.stdout == "1\n"


# Lines whose argv shows what the shell did; each must print under Convox (interpolation,
# shellquote split, exec) exactly what it prints under Heroku's `bash -c`.
_EQUIVALENT = [
    "printf '%s|' a b # c d",
    "printf '%s|' \"a # b\" c#d",
    "printf '%s|' ~/x ~",
    "printf '%s|' a=~/x",
    "printf '%s|' *.jar",
    "printf '%s|' $(echo 1 2) `echo 3` $((1+2))",
    "printf '%s|' ${NOPE:-dflt} ${X:-no} ${NOPE2-d2}",
    "true && printf '%s|' ok",
    "false || printf '%s|' fb",
    "printf '%s|' a; printf '%s|' b",
    "printf '%s|' $Q \"$Q\" '$X' \"$X\" $X",
    "cd sub && printf '%s|' \"$PWD\"",
    "printf '%s|' --port=$PORT -p ${PORT} ${PORT:-5000}",
    "printf '%s|' a\\ b 'c d' \"e\\\"f\" 'a'\"b\"c",
    "X=2; printf '%s|' $X",
    "printf '%s|' {a,b} \"{c,d}\"",
    "printf '%s|' \"${X}\"x ${X}y $HOME/y",
    "exec printf '%s|' e",
    "FOO=1 printf '%s|' \"$FOO\"",
    "test -n \"$X\" && printf '%s|' t || printf '%s|' f",
    "[ \"$X\" == 1 ] && printf '%s|' eq || printf '%s|' ne",
    "printf '%s|' \\${X} \"\\${X}\" '${X}'",  # escaped or single-quoted: literal under bash
    "printf '%s|' \"a\" # it's a comment",  # a quote inside the comment is not an error
]


@pytest.mark.parametrize("line", _EQUIVALENT)
def test_translated_line_runs_like_herokus_bash(tmp_path: Path, line: str) -> None:
    """The translation's contract, end to end: Heroku runs the line with `bash -c`
    (heroku/buildpacks-procfile); Convox interpolates `${...}`, splits with go-shellquote and
    execs (convox pkg/manifest/helpers.go, provider/k8s/process.go). Same output, same cwd."""
    (tmp_path / "home").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "app.jar").write_text("")
    env = {
        "X": "1",
        "Q": "a b",
        "PORT": "3000",
        "HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }
    heroku = subprocess.run(
        ["bash", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    result = convert_command(line, port=3000, subject="web", where="Procfile", line=1)
    convox_env = {**result.defaults, **env}
    argv = convox_argv(result.command, convox_env)
    convox = subprocess.run(argv, env=convox_env, cwd=tmp_path, capture_output=True, text=True)
    assert (convox.returncode, convox.stdout) == (heroku.returncode, heroku.stdout), argv


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('a "\\$x" "\\a"', ["a", "$x", "\\a"]),  # in "...": only $ ` " \\ newline escape
        ("a\\ b 'c\\d' \"e\"'f'g", ["a b", "c\\d", "efg"]),
        ("  x\t\ny  ", ["x", "y"]),
    ],
)
def test_go_shellquote_port(text: str, words: list[str]) -> None:
    """The stand-in for convox's split, from go-shellquote unquote.go (vendored in convox)."""
    assert split(text) == words


@pytest.mark.parametrize("text", ["'a", '"a', "a\\"])
def test_go_shellquote_port_refuses_what_go_shellquote_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="Unterminated"):
        split(text)
