"""start-workers: after the switch is verified, the Convox app's held services and timers go live.

Until now deploy and add-domain kept every service but the web one at ``scale.count: 0`` and
left the timers out of the promoted manifest (why and how, from the convox source:
steps/holding.py), so Heroku's workers and Scheduler jobs never had a twin on Convox. This
last step:

1. scales each held service to the formation recorded from Heroku by preflight (the Heroku
   process type mapped to its Convox service name the way ``cutover translate`` maps Procfile
   types: cutover/translate/model.py ``convox_name``); a service no Heroku type maps to gets its
   manifest's count. ``convox scale S --count N`` sets the deployment's replicas
   (provider/k8s/service.go ``ServiceUpdate``), and a non-zero runtime count survives later
   promotes (provider/k8s/release.go: ``CoalesceInt(runtime, scale.count.min)``);
2. when the manifest has timers: builds the staged manifest with the timers back (and only the
   services whose formation is 0 still at ``scale.count: 0``, since a promote would otherwise
   give them the manifest's count) and promotes it, with no release command: the source and
   schema are add-domain's, whose release command already ran;
3. reads it back: ``convox scale`` shows each service's DESIRED equal to its target and, within
   a bounded wait, as many RUNNING; the active release's manifest holds the timers.

Undo (``cutover rollback``, before Heroku's workers come back): every service this step
started goes back to 0 and, when it released the timers, the held release (add-domain's, else
deploy's) is promoted again, which prunes the timers' CronJobs; read back the same way.
"""

from __future__ import annotations

import time
from typing import Any

import yaml

from cutover.errors import CutoverError
from cutover.steps.app import DeployOutputs
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.domain import AddDomainOutputs
from cutover.steps.holding import manifest_count, staged_name, timer_names
from cutover.steps.manifests import (
    held_services,
    load_manifest,
    manifest_path,
    web_service,
    write_staged_keeping_comments,
)
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.ship import build_marker, ensure_promoted, scale_counts, wait_for_marked_build

RUNNING_WAIT = 600.0


class StartWorkersProgress(Progress):
    """Saved before each effect: the targets before the first scale, the build's release before
    its promote (undo reads them when the step did not finish)."""

    targets: dict[str, int] | None = None
    built: str | None = None


class StartWorkersOutputs(StepOutputs):
    """``scaled``: service -> processes it runs now; ``timers``: the timers released;
    ``release``: the release with the timers this step promoted (None without timers);
    ``held_release``: the release undo promotes back."""

    step_id = "start-workers"
    scaled: dict[str, int]
    timers: list[str]
    release: str | None = None
    held_release: str | None = None


class StartWorkers(Step):
    id = "start-workers"
    title = "Start the Convox workers and timers"
    outputs = StartWorkersOutputs
    reads = (PreflightOutputs, DeployOutputs, AddDomainOutputs)
    fields = ("convox.app", "convox.rack", "convox.manifest", "convox.source", "smoke.service")
    undo_title = "Stop the Convox workers and timers"

    # -- what to reach ------------------------------------------------------------------------
    def targets(self, ctx: Context) -> dict[str, int]:
        """Held service -> processes: Heroku's formation for the type that maps to it, else
        the manifest's count."""
        from cutover.translate.model import convox_name  # noqa: PLC0415 - translate loads only when a step runs (start-up time)

        saved = self.remembered(ctx, StartWorkersProgress).targets
        if saved is not None:
            return saved
        pre = self.read(ctx, PreflightOutputs)
        formation = {
            convox_name(kind): dynos.quantity
            for kind, dynos in (pre.heroku_formation if pre else {}).items()
        }
        services = load_manifest(manifest_path(ctx))["services"]
        targets = {}
        for name in held_services(ctx):
            if name in formation:
                targets[name] = formation[name]
            else:
                targets[name] = manifest_count(services.get(name))
        return targets

    def held_release(self, ctx: Context) -> str | None:
        added = self.read(ctx, AddDomainOutputs)
        deployed = self.read(ctx, DeployOutputs)
        return added.release if added else deployed.release if deployed else None

    def _timers(self, ctx: Context) -> list[str]:
        return timer_names(load_manifest(manifest_path(ctx)))

    # -- the step -----------------------------------------------------------------------------
    def describe(self, ctx: Context) -> list[str]:
        manifest = ctx.model.convox.manifest
        lines = [cmd(ctx.convox.argv("scale"))]
        known = self.read(ctx, PreflightOutputs) is not None
        for service, count in (self.targets(ctx) if known else {}).items():
            lines.append(cmd(ctx.convox.scale_argv(service, count)) + "   (unless already so)")
        if not known:
            lines += [
                f"scale {service} to the Heroku formation preflight records: "
                f"convox scale {service} --count N"
                for service in held_services(ctx)
            ]
        timers = self._timers(ctx)
        if timers:
            staged = staged_name(manifest)
            source = str(ctx.playbook.resolve(ctx.model.convox.source))
            marker = f"cutover {ctx.state.run_id} {self.id} <nonce>"
            lines += [
                f"write {staged} from {manifest}: timers {', '.join(timers)} back; services "
                "whose Heroku formation is 0 stay at scale.count 0",
                cmd(ctx.convox.argv("build", source, "-m", staged, "--id", "-d", marker)),
                cmd(ctx.convox.argv("releases", "promote", "<R>")),
            ]
        lines.append(cmd(ctx.convox.argv("scale")) + "   (read back: DESIRED and RUNNING)")
        return lines

    def check(self, ctx: Context) -> StartWorkersOutputs | None:
        targets = self.targets(ctx)
        counts = scale_counts(ctx)
        if any(counts.get(s, (0, 0))[0] != n for s, n in targets.items()):
            return None
        timers = self._timers(ctx)
        active = ctx.convox.active_release()
        if timers and not (active and set(timers) <= set(self._active_timers(ctx, active))):
            return None
        return self._outputs(ctx, targets, timers, active if timers else None)

    def recover(self, ctx: Context) -> StartWorkersOutputs | None:
        """A build of this step that an interruption left: wait for it, promote it, verify."""
        marker = build_marker(ctx, self.id)
        if marker is None:
            return None
        build = wait_for_marked_build(ctx, marker)
        release = build.get("RELEASE", "") if build else ""
        if not release:
            return None
        targets = self.targets(ctx)
        self._scale(ctx, targets)
        ctx.save(StartWorkersProgress(built=release))
        ensure_promoted(ctx, release)
        return self._verified(ctx, targets, self._timers(ctx), release)

    def apply(self, ctx: Context) -> StartWorkersOutputs:
        targets = self.targets(ctx)
        ctx.save(StartWorkersProgress(targets=targets))
        self._scale(ctx, targets)
        timers = self._timers(ctx)
        release = None
        if timers:
            marker = build_marker(ctx, self.id, create=True)
            assert marker is not None
            source = ctx.playbook.resolve(ctx.model.convox.source)
            # The operator's comments kept, as add-domain keeps them (issue 12).
            staged = write_staged_keeping_comments(
                source, ctx.model.convox.manifest, web_service(ctx), release_to=targets
            )
            ctx.note(f"releasing the timers {', '.join(timers)}: building {staged}")
            release = ctx.convox.build(source, staged, marker)
            ctx.save(StartWorkersProgress(built=release))
            ensure_promoted(ctx, release)
        return self._verified(ctx, targets, timers, release)

    def _scale(self, ctx: Context, targets: dict[str, int]) -> None:
        counts = scale_counts(ctx)
        for service, count in targets.items():
            if counts.get(service, (0, 0))[0] != count:
                ctx.note(f"scaling the Convox service {service} to {count} (Heroku's formation)")
                ctx.convox.scale(service, count)

    def _active_timers(self, ctx: Context, release: str) -> list[str]:
        try:
            deployed: Any = yaml.safe_load(ctx.convox.release_manifest(release)) or {}
        except yaml.YAMLError:
            return []
        return timer_names(deployed) if isinstance(deployed, dict) else []

    def _verified(
        self, ctx: Context, targets: dict[str, int], timers: list[str], release: str | None
    ) -> StartWorkersOutputs:
        """Read back: DESIRED is the target at once; RUNNING reaches it within RUNNING_WAIT;
        the released timers are in the active release's manifest."""
        wait_running(ctx, targets)
        if timers:
            active = ctx.convox.active_release()
            missing = sorted(set(timers) - set(self._active_timers(ctx, active or "")))
            if missing:
                raise CutoverError(
                    f"the active Convox release {active} does not declare the timers "
                    f"{', '.join(missing)}",
                    resolution=f"Look at `convox releases manifest {active} -a "
                    f"{ctx.convox.app}`; run `cutover run` again.",
                )
        return self._outputs(ctx, targets, timers, release)

    def _outputs(
        self, ctx: Context, targets: dict[str, int], timers: list[str], release: str | None
    ) -> StartWorkersOutputs:
        return StartWorkersOutputs(
            scaled=dict(targets),
            timers=timers,
            release=release,
            held_release=self.held_release(ctx),
        )

    # -- rollback -----------------------------------------------------------------------------
    def _started(self, ctx: Context) -> tuple[dict[str, int], str | None]:
        """What the forward step did or was doing: (targets, release with the timers)."""
        out = ctx.state.step(self.id).outputs
        saved = self.remembered(ctx, StartWorkersProgress)
        targets = out.get("scaled") or saved.targets or {}
        release = out.get("release") or saved.built
        return {str(k): int(v) for k, v in targets.items()}, release

    def undo_needed(self, ctx: Context) -> str | None:
        targets, release = self._started(ctx)
        if not targets and not release:
            return None
        counts = scale_counts(ctx)
        running = sorted(s for s in targets if counts.get(s, (0, 0))[0] > 0)
        if running:
            return f"the Convox service(s) {', '.join(running)} run beside Heroku's"
        held = self.held_release(ctx)
        if release and held and ctx.convox.active_release() != held:
            return f"the Convox release {release} with the timers may be active"
        return None

    def undo_describe(self, ctx: Context) -> list[str]:
        targets, release = self._started(ctx)
        lines = [cmd(ctx.convox.argv("scale", s, "--count", "0")) for s in targets]
        held = self.held_release(ctx)
        if release and held:
            lines.append(
                cmd(ctx.convox.argv("releases", "promote", held))
                + "   (the held release: no timers)"
            )
        lines.append(cmd(ctx.convox.argv("scale")) + "   (read back: every service wants 0)")
        return lines

    def undo(self, ctx: Context) -> None:
        targets, release = self._started(ctx)
        self._scale(ctx, {s: 0 for s in targets})
        held = self.held_release(ctx)
        if release and held:
            ensure_promoted(ctx, held)
        wait_running(ctx, {s: 0 for s in targets})


def wait_running(ctx: Context, targets: dict[str, int], timeout: float = RUNNING_WAIT) -> None:
    """Poll ``convox scale`` until every service wants and runs its target; a DESIRED that is
    not the target fails at once (nothing will change it), a RUNNING that does not reach it
    within ``timeout`` fails naming the services."""
    deadline = time.monotonic() + timeout
    while True:
        counts = scale_counts(ctx)
        wrong = {
            s: counts.get(s, (0, 0))[0] for s, n in targets.items() if counts.get(s, (0, 0))[0] != n
        }
        if wrong:
            raise CutoverError(
                "the Convox scale does not match: "
                + ", ".join(
                    f"{s} wants {d}, expected {targets[s]}" for s, d in sorted(wrong.items())
                ),
                resolution=f"Look at `convox scale -a {ctx.convox.app}`; run `cutover run` again.",
            )
        behind = sorted(s for s, n in targets.items() if counts.get(s, (0, 0))[1] != n)
        if not behind:
            return
        if time.monotonic() > deadline:
            raise CutoverError(
                f"after {timeout:g}s the Convox service(s) {', '.join(behind)} do not run the "
                "processes they want: "
                + ", ".join(f"{s} {counts.get(s, (0, 0))[1]}/{targets[s]}" for s in behind),
                resolution=f"Look at `convox ps -a {ctx.convox.app}` and `convox logs -a "
                f"{ctx.convox.app}`; run `cutover run` again.",
            )
        ctx.note("waiting for the Convox processes: " + ", ".join(behind))
        ctx.sleep(3)
