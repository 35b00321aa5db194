"""One error shape for everything cutover reports: what happened, details, what to do next."""

from __future__ import annotations

import shlex

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_INVALID = 2
EXIT_GATE = 3
EXIT_LOCKED = 4
EXIT_NOT_YET = 5
EXIT_INTERRUPTED = 130


class CutoverError(Exception):
    """An error cutover expects and explains; the CLI prints it without a traceback."""

    exit_code = EXIT_STEP_FAILED

    def __init__(self, brief: str, *, details: str = "", resolution: str = "") -> None:
        super().__init__(brief)
        self.brief = brief
        self.details = details
        self.resolution = resolution

    def __str__(self) -> str:
        parts = [self.brief]
        if self.details:
            parts.append(self.details)
        if self.resolution:
            parts.append(self.resolution)
        return "\n".join(parts)


class InvalidInput(CutoverError):
    """A playbook, state file or argument cutover cannot use (exit 2)."""

    exit_code = EXIT_INVALID


class StateError(InvalidInput):
    """The state file is unreadable, corrupt or from a newer cutover; it is left untouched."""


class LockedError(CutoverError):
    """Another run holds the lock (exit 4)."""

    exit_code = EXIT_LOCKED


class GateWaiting(CutoverError):
    """A gate needs an operator's confirmation and none can be asked for (exit 3)."""

    exit_code = EXIT_GATE


class NotYet(CutoverError):
    """A step can only run later (a TTL to wait out, a soak): nothing failed, the step stays
    pending, and the message says when to run again (exit 5)."""

    exit_code = EXIT_NOT_YET


class Interrupted(CutoverError):
    """Ctrl-C or SIGTERM stopped the run (exit 130)."""

    exit_code = EXIT_INTERRUPTED


class StepFailed(CutoverError):
    """A step could not finish; the run can be resumed (exit 1)."""

    exit_code = EXIT_STEP_FAILED


class CommandError(CutoverError):
    """An external command failed. The message shows the masked command, exit code, stderr tail."""

    def __init__(
        self,
        argv_masked: list[str],
        returncode: int | None,
        stderr_tail: str,
        *,
        reason: str = "",
        transient: bool = False,
        timed_out: bool = False,
        stdout_tail: str = "",
    ) -> None:
        shown = shlex.join(argv_masked)
        if timed_out:
            brief = f"command timed out: {shown}"
        elif reason:
            brief = f"command failed ({reason}): {shown}"
        else:
            brief = f"command failed with exit code {returncode}: {shown}"
        details = ""
        if stderr_tail.strip():
            details = "stderr:\n" + "\n".join("    " + line for line in stderr_tail.splitlines())
        elif stdout_tail.strip():
            details = "output:\n" + "\n".join("    " + line for line in stdout_tail.splitlines())
        super().__init__(brief, details=details)
        self.argv_masked = argv_masked
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.transient = transient
        self.timed_out = timed_out


class ToolMissing(CutoverError):
    """A required command-line tool is not installed or too old."""


class UnexpectedOutput(CutoverError):
    """A command-line tool printed something cutover cannot read."""
