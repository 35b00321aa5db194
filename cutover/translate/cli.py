"""``cutover translate`` and ``cutover init``: the CLI side of the translation.

Live facts come from the heroku adapter (the same runner as every other command): formation,
add-ons with their config var NAMES (values are never read into the translation), domains,
and the Postgres major version when the database answers.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.heroku import HerokuAdapter
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.engine.context import load_sandbox
from cutover.errors import CutoverError, InvalidInput
from cutover.playbook_yaml import MAX_PLAYBOOK_BYTES, parse_yaml, read_limited
from cutover.runner import Runner
from cutover.secrets import SecretMasker
from cutover.translate.commands import run_init, run_translate
from cutover.translate.facts import LiveFacts, facts_from_heroku_json
from cutover.translate.model import TimerSpec, TranslateOptions
from cutover.translate.schedules import parse_timer_option, timer_specs_from_playbook
from cutover.ui import Ui

Guard = Callable[..., None]


def make_runner(masker: SecretMasker, sandbox: Path | None) -> Runner:
    runner = Runner(masker)
    if sandbox is not None:
        env = load_sandbox(sandbox)
        runner.base_env.update(env.env)
        runner.path_prefix = list(env.path_prefix)
        masker.add(env.env.get("HEROKU_API_KEY"))
    return runner


def live_facts(runner: Runner, masker: SecretMasker, app: str, work: Path, ui: Ui) -> LiveFacts:
    heroku = HerokuAdapter(runner, masker, app, work)
    heroku.version()
    info = heroku.app_info()
    addons = heroku.addons()
    names = sorted(heroku.config())  # names only; values stay in the adapter's masker
    domains = heroku.domains()
    formation = " ".join(f"{f.type}={f.quantity}:{f.size}" for f in heroku.formation())
    version = None
    extensions: list[str] = []
    if any((a.get("addon_service") or {}).get("name") == "heroku-postgresql" for a in addons):
        with contextlib.suppress(CutoverError):
            url = heroku.credentials_url("DATABASE")
            postgres = PostgresAdapter(runner, masker)
            conn = ConnInfo.from_url(url)
            version = str(postgres.server_major(conn))
            rows = postgres.psql(conn, "SELECT extname FROM pg_extension ORDER BY 1;")
            extensions = [row[0] for row in rows if row]
        if version is None:
            ui.info(
                "could not read the Postgres version from the database; the manifest will say so",
                "yellow",
            )
    return facts_from_heroku_json(
        info,
        addons,
        names,
        domains,
        formation,
        postgres_version=version,
        postgres_extensions=extensions,
    )


def playbook_timers(path: Path) -> list[TimerSpec]:
    """Scheduler jobs from a playbook's ``timers:`` (only that key is read), if it exists."""
    try:
        text = read_limited(path, MAX_PLAYBOOK_BYTES, "playbook")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the playbook's timers: {exc}") from None
    data = parse_yaml(text, path)  # the playbook's own loader: duplicates, depth refused
    items = data.get("timers") if isinstance(data, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput(f"{path}: timers: expected a list")
    return timer_specs_from_playbook(items, source=str(path))


def _options(
    port: int | None,
    health: str | None,
    managed: bool,
    release_as: str,
    timers: list[tuple[str, str]],
    jobs_service: bool,
    playbook: Path | None = None,
    pg_client: bool = False,
) -> TranslateOptions:
    if release_as not in ("init-container", "one-off"):
        raise InvalidInput(f"--release-as {release_as}: expected init-container or one-off")
    specs: tuple[TimerSpec, ...] = tuple(parse_timer_option(a, c) for a, c in timers)
    if playbook is not None:
        specs = (*playbook_timers(playbook), *specs)
    return TranslateOptions(
        port=port,
        health=health,
        managed=managed,
        release_as=release_as,  # type: ignore[arg-type]
        timers=specs,
        jobs_service=jobs_service,
        pg_client=pg_client,
    )


PortOpt = Annotated[int | None, typer.Option(help="Fixed port of the web service.")]
HealthOpt = Annotated[str | None, typer.Option(help="Health check path of the web service.")]
ManagedOpt = Annotated[bool, typer.Option("--managed", help="rds-/elasticache- resources.")]
ReleaseOpt = Annotated[
    str,
    typer.Option(
        "--release-as", help="init-container (every pod start) or one-off (once per release)."
    ),
]
# --timer takes two values and repeats, which typer cannot declare: cutover's main() takes the
# `--timer NAME='CRON' 'COMMAND'` pairs out of argv (wherever they stand) before typer parses
# the rest; the commands read them from TIMERS.
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
TIMERS: list[tuple[str, str]] = []


def extract_timers(argv: list[str]) -> list[str]:
    """Move every ``--timer A B`` of a translate/init command line into TIMERS."""
    if not argv or argv[0] not in ("translate", "init"):
        return argv
    rest: list[str] = []
    items = list(argv)
    while items:
        arg = items.pop(0)
        if arg == "--":
            rest += [arg, *items]
            break
        if arg == "--timer":
            if len(items) < 2:
                raise InvalidInput("--timer needs two values: NAME='CRON' 'COMMAND'")
            TIMERS.append((items.pop(0), items.pop(0)))
        else:
            rest.append(arg)
    return rest


TIMER_HELP = (
    "\n\nA Heroku Scheduler job becomes a timer with --timer NAME='CRON' 'COMMAND' "
    "(repeatable; cron in UTC)."
)


def timer_pairs(args: list[str]) -> list[tuple[str, str]]:
    pairs = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg != "--timer":
            raise InvalidInput(
                f"unexpected argument {arg!r}",
                resolution="See --help; a timer is --timer NAME='CRON' 'COMMAND'.",
            )
        if len(rest) < 2:
            raise InvalidInput("--timer needs two values: NAME='CRON' 'COMMAND'")
        pairs.append((rest.pop(0), rest.pop(0)))
    return pairs


JobsOpt = Annotated[
    bool, typer.Option("--jobs-service", help="Run timers on a `jobs` service at count 0.")
]
PgClientOpt = Annotated[
    bool,
    typer.Option(
        "--pg-client",
        help="Add a `pgclient` service (postgres:<Heroku's major>, count 0) for "
        "database.method: in-rack.",
    ),
]
TimersFromOpt = Annotated[
    Path,
    typer.Option(
        "--playbook", help="Read Heroku Scheduler jobs from this playbook's timers: (if it exists)."
    ),
]
SandboxOpt = Annotated[
    Path | None,
    typer.Option(
        "--sandbox", help="Use a sandbox's environment (cutover sandbox up) for the live facts."
    ),
]


def register(app: typer.Typer, guard: Guard) -> None:
    @app.command(
        context_settings=EXTRA,
        help="Translate Procfile, app.json, heroku.yml (and "
        "live facts) into convox.yml; findings go to stderr." + TIMER_HELP,
    )
    def translate(
        ctx: typer.Context,
        folder: Annotated[Path, typer.Argument(help="The app's source folder.")] = Path("."),
        heroku_app: Annotated[
            str | None,
            typer.Option("--heroku-app", help="Also read live facts of this Heroku app."),
        ] = None,
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="Write convox.yml here.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON.")] = False,
        port: PortOpt = None,
        health: HealthOpt = None,
        managed: ManagedOpt = False,
        release_as: ReleaseOpt = "init-container",
        jobs_service: JobsOpt = False,
        pg_client: PgClientOpt = False,
        playbook: TimersFromOpt = Path("cutover.yml"),
        sandbox: SandboxOpt = None,
    ) -> None:

        def body(ui: Ui) -> int:
            options = _options(
                port,
                health,
                managed,
                release_as,
                [*TIMERS, *timer_pairs(ctx.args)],
                jobs_service,
                playbook,
                pg_client,
            )
            facts = None
            if heroku_app:
                with tempfile.TemporaryDirectory(prefix="cutover-") as work:
                    facts = live_facts(
                        make_runner(ui.masker, sandbox), ui.masker, heroku_app, Path(work), ui
                    )
            return run_translate(
                folder,
                facts=facts,
                options=options,
                output=output,
                as_json=as_json,
                stdout=sys.stdout,
                stderr=sys.stderr,
            )

        guard(body, quiet_stdout=True)

    @app.command(
        context_settings=EXTRA,
        help="Write convox.yml and a cutover.yml playbook "
        "pre-filled from the live app." + TIMER_HELP,
    )
    def init(
        ctx: typer.Context,
        folder: Annotated[Path, typer.Argument(help="The app's source folder.")] = Path("."),
        heroku_app: Annotated[str, typer.Option("--heroku-app", help="The Heroku app.")] = ...,  # type: ignore[assignment]
        convox_app: Annotated[
            str | None,
            typer.Option("--convox-app", help="Convox app name (default: the Heroku app's)."),
        ] = None,
        rack: Annotated[
            str | None, typer.Option("--rack", help="Convox rack (default: `convox switch`).")
        ] = None,
        file: Annotated[Path, typer.Option("-f", "--file", help="Playbook to write.")] = Path(
            "cutover.yml"
        ),
        force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
        port: PortOpt = None,
        health: HealthOpt = None,
        managed: ManagedOpt = False,
        release_as: ReleaseOpt = "init-container",
        jobs_service: JobsOpt = False,
        pg_client: PgClientOpt = False,
        sandbox: SandboxOpt = None,
    ) -> None:

        def body(ui: Ui) -> int:
            options = _options(
                port,
                health,
                managed,
                release_as,
                [*TIMERS, *timer_pairs(ctx.args)],
                jobs_service,
                pg_client=pg_client,
            )
            runner = make_runner(ui.masker, sandbox)
            with tempfile.TemporaryDirectory(prefix="cutover-") as work:
                facts = live_facts(runner, ui.masker, heroku_app, Path(work), ui)
            name = convox_app or heroku_app
            current = rack
            if current is None:
                with contextlib.suppress(CutoverError):
                    current = ConvoxAdapter(runner, ui.masker, name, None).current_rack() or None
            return run_init(
                folder,
                facts=facts,
                convox_rack=current,
                convox_app=name,
                options=options,
                playbook_path=file,
                force=force,
                stdout=sys.stdout,
                stderr=sys.stderr,
            )

        guard(body, quiet_stdout=True)
