"""Runner.pipe, Runner.session and Runner.child_seconds (cutover/runpipes.py), with real children.

No timed assertions: a stopped child is shown by its exit and the error, not by a clock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, read_argv_log

from cutover.errors import CommandError
from cutover.runner import Runner
from cutover.secrets import MASK, SecretMasker


def _runner(audit: ListAudit, argv_log: Path) -> Runner:
    return Runner(SecretMasker(), audit=audit, base_env={ARGV_LOG_ENV: str(argv_log)})


def test_pipe_moves_bytes_between_children_and_keeps_secrets_in_env(
    audit: ListAudit, argv_log: Path
) -> None:
    runner = _runner(audit, argv_log)
    runner.masker.add("s3cret-pw")
    result = runner.pipe(
        ["sh", "-c", 'head -c 3000000 /dev/zero; printf "%s" "$SECRET"'],
        ["wc", "-c"],
        producer_env={"SECRET": "s3cret-pw"},
        timeout=120,
    )
    assert result.stdout.strip() == str(3_000_000 + len("s3cret-pw"))
    assert result.returncodes == (0, 0)
    logged = read_argv_log(argv_log)
    assert logged[0][-1].endswith('$SECRET"') and logged[1][0].endswith("wc")
    assert all("s3cret-pw" not in " ".join(argv) for argv in logged)
    event = audit.of("command")[-1]
    assert "|" in event["argv"] and event["outcome"] == "ok"
    assert runner.child_seconds > 0


def test_pipe_failure_of_either_side_is_a_command_error(audit: ListAudit, argv_log: Path) -> None:
    runner = _runner(audit, argv_log)
    with pytest.raises(CommandError) as producer_failed:
        runner.pipe(["sh", "-c", "echo broken >&2; exit 3"], ["cat"], timeout=60)
    assert producer_failed.value.returncode == 3
    assert "broken" in producer_failed.value.stderr_tail
    with pytest.raises(CommandError) as consumer_failed:
        runner.pipe(["yes"], ["sh", "-c", "read x; exit 4"], timeout=60)
    assert consumer_failed.value.returncode == 4
    assert audit.of("command")[-1]["outcome"] == "failed"


def test_pipe_is_stopped_by_abort_and_by_its_timeout(audit: ListAudit, argv_log: Path) -> None:
    runner = _runner(audit, argv_log)
    abort = threading.Event()
    abort.set()
    with pytest.raises(CommandError) as aborted:
        runner.pipe(["sleep", "600"], ["cat"], timeout=600, abort=abort)
    assert "another copy failed" in aborted.value.brief
    with pytest.raises(CommandError) as timed_out:
        runner.pipe(["sleep", "600"], ["cat"], timeout=0.5)
    assert "timed out" in timed_out.value.brief
    assert [e["outcome"] for e in audit.of("command")] == ["aborted", "timeout"]


def test_session_answers_line_by_line_and_masks(audit: ListAudit, argv_log: Path) -> None:
    runner = _runner(audit, argv_log)
    runner.masker.add("hidden-value")
    with runner.session(["sh", "-c", 'while read l; do echo "got $l"; done']) as s:
        s.write("one\n")
        assert s.readline(timeout=60) == "got one"
        s.write("hidden-value\n")
        assert s.readline(timeout=60) == "got hidden-value"
        assert s.close() == 0
    stop = audit.of("command-stop")[-1]
    assert stop["exit_code"] == 0
    assert "hidden-value" not in audit.text()
    assert MASK not in " ".join(read_argv_log(argv_log)[0])


def test_session_readline_reports_an_exited_child(audit: ListAudit, argv_log: Path) -> None:
    runner = _runner(audit, argv_log)
    with (
        runner.session(["sh", "-c", "echo no luck >&2; exit 2"]) as s,
        pytest.raises(CommandError) as exc,
    ):
        s.readline(timeout=60)
    assert exc.value.returncode == 2
    assert "no luck" in exc.value.stderr_tail


def test_child_seconds_counts_overlapping_children_once(audit: ListAudit, argv_log: Path) -> None:
    runner = _runner(audit, argv_log)
    assert runner.child_seconds == 0
    threads = [
        threading.Thread(target=runner.run, args=(["sleep", "0.3"],), kwargs={"timeout": 60})
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    durations = [e["duration"] for e in audit.of("command")]
    assert len(durations) == 3
    # Three overlapping children: the wall time with at least one running is below their sum.
    assert max(durations) <= runner.child_seconds + 0.01
    assert runner.child_seconds < sum(durations)


def test_session_write_to_an_exited_child_is_a_command_error(
    audit: ListAudit, argv_log: Path
) -> None:
    # Python ignores SIGPIPE: a write to a child that has gone raises BrokenPipeError, which
    # would reach the user as a traceback.
    runner = _runner(audit, argv_log)
    with runner.session(["sh", "-c", "echo gone >&2; exit 3"]) as s:
        s.proc.wait(timeout=60)
        with pytest.raises(CommandError) as exc:
            s.write("SELECT 1;\n" * 10000)
    assert exc.value.returncode == 3
    assert "gone" in exc.value.stderr_tail
