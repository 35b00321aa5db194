"""The convox stand-in's scale across promotes, as the real rack does it (what cutover's held
workers rely on: cutover/steps/holding.py).

Facts: provider/k8s/release.go ``releaseTemplateServices`` (replicas = ``CoalesceInt(runtime
count, scale.count.min)``, pkg/common/coalesce.go: the first non-zero), provider/k8s/service.go
``ServiceList`` (Min/Max from the manifest's scale.count; ColdStart when min and count are 0),
``ServiceUpdate`` (``--count`` sets the replicas), pkg/cli/scale.go (the table, COLD status).
"""

from __future__ import annotations

import time

import yaml
from convox_support import MANIFEST, Sandbox, release_ids
from support.waiting import wait_for

from cutover.sandbox import convox_fake as fake
from cutover.sandbox.convox_fake import timers
from cutover.steps.holding import staged_manifest

HELD = MANIFEST.replace(
    "  worker:\n    command: bin/worker --queue default\n",
    "  worker:\n    command: bin/worker --queue default\n    scale:\n      count: 0\n",
)
HEADER = "SERVICE  DESIRED  RUNNING  CPU  MEMORY  GPU  MIN  MAX  STATUS\n"


def workers(box: Sandbox) -> list[dict[str, object]]:
    processes = box.app()["processes"]
    assert isinstance(processes, list)
    return [p for p in processes if p["service"] == "worker"]


def test_scale_count_zero_in_the_manifest_holds_a_service_through_promotes(app: Sandbox) -> None:
    app.write_manifest(HELD)
    app.ok("deploy", "-a", "demo")
    assert app.ok("scale", "-a", "demo") == (
        HEADER
        + "web      1        1        250  512     -    1    1    \n"
        + "worker   0        0        250  512     -    0    0    COLD (~2-5m first req)\n"
    )
    assert workers(app) == []
    app.ok("deploy", "-a", "demo")  # CoalesceInt(0, 0): still held
    assert workers(app) == []
    app.ok("scale", "worker", "--count", "2", "-a", "demo")
    assert len(workers(app)) == 2
    app.write_manifest()  # the manifest without scale: count 1
    app.ok("deploy", "-a", "demo")  # CoalesceInt(2, 1): the runtime count persists
    assert "worker   2        2" in app.ok("scale", "-a", "demo")
    assert len(workers(app)) == 2


def test_a_runtime_zero_does_not_survive_a_promote(deployed: Sandbox) -> None:
    """``convox scale worker --count 0`` alone does not hold a worker: the next promote gives it
    the manifest's count again (CoalesceInt skips a 0), which is why cutover writes
    scale.count: 0 into the manifest it deploys."""
    deployed.ok("scale", "worker", "--count", "0", "-a", "demo")
    assert workers(deployed) == []
    deployed.ok("deploy", "-a", "demo")
    assert "worker   1        1        250  512     -    1    1    \n" in deployed.ok(
        "scale", "-a", "demo"
    )
    assert len(workers(deployed)) == 1


def test_the_staged_manifest_deploys_with_the_worker_held_and_no_timers(app: Sandbox) -> None:
    """cutover's staged manifest (steps/holding.py) is a manifest the rack accepts: the worker
    at 0, the timer out of the release; released, the timer is back and the worker keeps its
    count."""
    with_timer = MANIFEST + "timers:\n  cleanup:\n    schedule: '0 3 * * *'\n"
    with_timer += "    service: worker\n    command: bin/cleanup\n"
    data = yaml.safe_load(with_timer)
    held = yaml.safe_dump(staged_manifest(data, "web", "convox.yml"))
    app.write_manifest(held)
    app.ok("deploy", "-a", "demo")
    release = release_ids(app)[-1]
    assert "timers" not in yaml.safe_load(app.ok("releases", "manifest", release, "-a", "demo"))
    assert workers(app) == []
    app.ok("scale", "worker", "--count", "1", "-a", "demo")
    live = yaml.safe_dump(staged_manifest(data, "web", "convox.yml", release_to={"worker": 1}))
    app.write_manifest(live)
    app.ok("deploy", "-a", "demo")
    release = release_ids(app)[-1]
    deployed = yaml.safe_load(app.ok("releases", "manifest", release, "-a", "demo"))
    assert list(deployed["timers"]) == ["cleanup"]
    assert "worker   1        1" in app.ok("scale", "-a", "demo")


def test_cron_schedules_match_like_cron() -> None:
    at = time.strptime("2026-11-29 03:00", "%Y-%m-%d %H:%M")  # a Sunday
    assert timers.matches("0 3 * * *", at)
    assert not timers.matches("1 3 * * *", at)
    assert timers.matches("*/15 1-5 * 11 0", at)
    assert timers.matches("0 3 * * 7", at)  # 7 is Sunday too
    assert timers.matches("0,30 3 29 * *", at)
    assert not timers.matches("0 3 * * 1-5", at)
    assert not timers.matches("0 3 * *", at)


def test_timers_fire_for_the_active_release_only(app: Sandbox) -> None:
    """template/app/timer.yml.tmpl: a CronJob per timer of the promoted release; a release
    without the timer prunes it (the stand-in's timers job of that release ends)."""
    fake.configure_rack(app.config, name="sandbox", timings={"timer_minute": 0.3})
    out = app.root / "fired.txt"
    with_timer = MANIFEST + (
        f"timers:\n  tick:\n    schedule: '* * * * *'\n    service: worker\n"
        f"    command: sh -c 'echo $RELEASE $TIMER >> {out}'\n"
    )
    app.write_manifest(with_timer)
    app.ok("deploy", "-a", "demo")
    release = release_ids(app)[-1]
    wait_for(lambda: out.exists() and f"{release} tick" in out.read_text(), "the timer fired")
    app.write_manifest(HELD)  # no timers
    app.ok("deploy", "-a", "demo")

    def no_timers_job() -> bool:
        return not [
            j for j in fake.read_state(app.config).get("jobs") or [] if j["kind"] == "timers"
        ]

    wait_for(no_timers_job, "the timers job of the old release ended")
