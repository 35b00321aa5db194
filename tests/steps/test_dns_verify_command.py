"""``cutover verify --dns`` (engine/verify_command.py, steps/dnswait.py check_now) as a real
cutover process against the fake tools and a real Knot server (tests/fakes): each name server's
answer shown, exit 1 naming the one that does not serve the router, with the rollback named."""

from __future__ import annotations

from fakes.harness import HEROKU_TARGET, LOWERED_TTL, RECORD, Project
from fakes.seed import ROUTER

from cutover.adapters.dns import Record, Rfc2136Provider


def test_verify_dns_on_demand_shows_each_server_then_names_the_one_that_lags(
    project: Project,
) -> None:
    run = project.run("run", "--yes", "--until", "verify-dns")
    assert run.returncode == 0, run
    before = project.state_path.read_text()

    same = project.run("verify", "--dns")
    assert same.returncode == 0, same
    assert f"{RECORD}: wanted CNAME {ROUTER}" in same.stdout
    assert f"ok  name server 127.0.0.1:{project.tap.port}: CNAME {ROUTER}." in same.stdout
    assert "every name server and resolver serves the expected record" in same.stdout
    assert project.state_path.read_text() == before  # on demand: no step entry changes

    knot = project.knot
    Rfc2136Provider("127.0.0.1", knot.port, knot.zone, knot.tsig_name, knot.tsig_secret).set(
        Record(RECORD, "CNAME", LOWERED_TTL, [HEROKU_TARGET + "."])
    )
    lags = project.run("verify", "--dns")
    assert lags.returncode == 1, lags
    assert f"LAG name server 127.0.0.1:{project.tap.port}: CNAME {HEROKU_TARGET}." in lags.stdout
    assert "1 DNS server(s) do not serve the expected record" in lags.stderr
    assert "cutover rollback" in lags.stderr
    assert "Traceback" not in lags.output
    events = [e for e in project.events() if e.get("kind") == "verify-dns"]
    assert [e["ok"] for e in events] == [True, False]
