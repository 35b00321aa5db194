"""disable-scheduler: a gate, before maintenance-on, listing the Heroku Scheduler jobs to disable.

The heroku CLI has no Scheduler command (its jobs are managed in the add-on's dashboard,
``heroku addons:open scheduler``), so cutover cannot disable the jobs itself: it lists them
(the playbook's ``timers``, the jobs copied from the dashboard, which ``cutover translate``
turns into Convox timers) and waits for the operator to confirm they are disabled. A job still
running is waited for by scale-down (its dyno has type ``scheduler``); one that starts after
the freeze fails to write (freeze-writes) instead of writing data the sync misses.
"""

from __future__ import annotations

from pydantic import Field

from cutover.steps.base import Context, Step, StepOutputs
from cutover.steps.freeze import prefetch
from cutover.steps.preflight import PreflightOutputs


class DisableSchedulerOutputs(StepOutputs):
    """The jobs the operator confirmed disabled (``name: schedule command``); empty, with
    ``nothing``, when there was no Scheduler add-on and no timer."""

    step_id = "disable-scheduler"
    jobs: list[str] = Field(default_factory=list)
    nothing: str | None = None


class DisableScheduler(Step):
    id = "disable-scheduler"
    title = "Disable the Heroku Scheduler jobs (dashboard)"
    outputs = DisableSchedulerOutputs
    reads = (PreflightOutputs,)
    fields = ("heroku.app", "timers")
    gate = "Have you disabled these Heroku Scheduler jobs?"

    @staticmethod
    def _jobs(ctx: Context) -> list[str]:
        return [f"{t.name}: {t.schedule} {t.command}" for t in ctx.model.timers]

    def _attached(self, ctx: Context) -> bool:
        pre = self.read(ctx, PreflightOutputs)
        return bool(pre and pre.scheduler)

    def describe(self, ctx: Context) -> list[str]:
        return [
            f"gate: disable the Heroku Scheduler jobs in the dashboard "
            f"(heroku addons:open scheduler -a {ctx.model.heroku.app}): {job}"
            for job in self._jobs(ctx)
        ] or ["gate when preflight saw a Heroku Scheduler add-on"]

    def check(self, ctx: Context) -> DisableSchedulerOutputs | None:
        # The last step before the window: read now what freeze-writes needs from Heroku.
        prefetch(ctx)
        # applies() sees only the playbook; whether the add-on is attached is preflight's fact.
        if self._jobs(ctx) or self._attached(ctx):
            return None
        reason = "no Heroku Scheduler add-on (preflight) and no timers in the playbook"
        ctx.note(f"nothing to disable: {reason}")
        return DisableSchedulerOutputs(jobs=[], nothing=reason)

    def gate_text(self, ctx: Context) -> str:
        jobs = self._jobs(ctx)
        where = (
            f"Heroku Scheduler has no CLI: open its dashboard (heroku addons:open scheduler "
            f"-a {ctx.model.heroku.app}) and delete or pause "
        )
        if jobs:
            listed = "\n".join(f"  - {job}" for job in jobs)
            return f"{where}these jobs (playbook timers):\n{listed}\n{self.gate}"
        return (
            f"{where}every job: preflight saw a Scheduler add-on but the playbook lists no "
            f"timers.\nHave you disabled every Heroku Scheduler job?"
        )

    def apply(self, ctx: Context) -> DisableSchedulerOutputs:
        jobs = self._jobs(ctx)
        ctx.note(
            "the operator confirmed the Heroku Scheduler jobs are disabled"
            + (f": {', '.join(t.name for t in ctx.model.timers)}" if jobs else "")
            + " (turn them on again in the dashboard if you roll back)"
        )
        return DisableSchedulerOutputs(jobs=jobs)
