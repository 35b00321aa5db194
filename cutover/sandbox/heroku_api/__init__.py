"""A local emulator of the Heroku Platform API and Data API for the real ``heroku`` CLI.

Run it as::

    python -m cutover.sandbox.heroku_api --state STATE.json --port P --backup-port Q \\
        --tls-cert CERT.pem --tls-key KEY.pem --pid-file PID

It serves the Platform API and the Data API on one plain-HTTP port on 127.0.0.1 (the CLI reuses
``HEROKU_HOST``'s scheme and port for the Data API, see docs/reference), and backup files over
HTTPS on a second port (``pg:backups:url`` must hand out an ``https://`` URL).

Modules: :mod:`.state` (the state file), :mod:`.seed` (the standard app from
``cutover/sandbox/data/heroku_seed.json``), :mod:`.routes_platform` and :mod:`.routes_data` (the
API), :mod:`.dynos` (dyno states over time), :mod:`.backups` (captures, scheduled backups, the
file server), :mod:`.emulator` (auth, faults, dispatch), :mod:`.server` (HTTP, command line),
:mod:`.env` (the CLI's environment).

State
-----
All state lives in one JSON file (0600), re-read on every request so tests and other processes
can edit it (through :func:`update_state`, or any atomic replace). Every change the emulator
makes is written atomically (temp file, fsync, ``os.replace``) under a thread lock plus an
``flock`` on ``<state>.lock``. The layout (see :func:`default_state`)::

    {
      "version": 1,
      "api_key": "...",                      # Bearer token (or Basic ":<key>") the API accepts
      "account": {"id", "email", ...},
      "next_backup_num": 1,                   # transfer numbers are unique over the whole file
      "faults": [ ... ],                      # see below
      "timings": {"backup_seconds", "backup_progress_interval",
                  "dyno_start_seconds", "dyno_stop_seconds"},   # seconds; absent = instant
      "apps": {
        "<name>": {
          "app": { Platform API app object: id, name, maintenance, stack, region, owner,
                   repo_size, slug_size, create_status, web_url, git_url, ... },
                   # app.maintenance is also what the sandbox's Heroku app reads
          "formation": [ {id, type, quantity, size, command, created_at, updated_at} ],
          "dyno_transitions": {"worker.1": {phase, at, ...}},   # see dynos.py
          "config_vars": {"KEY": "value"},    # strings only
          "addons": [ { Platform API add-on object (id, name, addon_service, plan, config_vars,
                        state, billed_price, ...),
                        "attachments": [ {id, name, config_vars, namespace} ],
                        "database": {host, port, database, user, password} } ],
                        # "database": only for heroku-postgresql, the REAL backing database
          "domains": [ {id, hostname, kind, cname, sni_endpoint, acm_status, ...} ],
          "domains_page_size": 1000,          # optional: a smaller value makes domains paginate
          "releases": [ {id, version, description, status, current, user, created_at, ...} ],
          "collaborators": [ ... ],
          "backup_schedules": [ {uuid, name, hour, timezone, days, addon_id, ...} ],
          "scheduled_backup_during_capture": 0,   # optional knob, see backups.py
          "transfers": [ {uuid, num, from_name, from_type, to_type, schedule, created_at,
                          finished_at, succeeded, processed_bytes, ..., "addon_id": "...",
                          "file": "backups/b001.dump", "token": "<unguessable>", "logs": [...]} ]
        }
      }
    }

Faults
------
``"faults": [{"method": "GET", "path": "/apps/myapp/config-vars", "status": 500,
"body": "<html>oops</html>", "times": 1}]`` answers the next matching request (exact method and
path, query ignored) with that status and body: a JSON object/array body, or a string that parses
as JSON, is sent as ``application/json``, any other string as ``text/html``. ``"delay": S`` holds
the request for S seconds first; without ``status`` it is then served normally. ``"reset":
true`` closes the connection with a TCP reset and no answer. ``times`` (default 1) is
decremented as the fault fires and persisted; a fault is removed when it reaches 0; ``-1`` fires
until removed. A ``path`` ending in ``*`` is a prefix. Each firing is appended to
``"faults_fired"``. Faults apply to both listeners (backup paths start with ``/backups/``).
:mod:`.faults` builds the faults the real CLI meets (5xx JSON or HTML, resets, delays) and says
what the CLI prints for each.

Deliberate differences from the real APIs
-----------------------------------------
- One account, one API key, no OAuth, no teams/spaces/pipelines (pipeline coupling is always
  404), no rate limits (no ``RateLimit-Remaining``), no ``Accept`` version negotiation, no
  ``ETag``/``Last-Modified``; every request answers ``Connection: close``.
- Only the routes the cutover CLI calls through ``heroku`` exist; others answer 404
  ``not_found``. PATCH /apps accepts only ``maintenance``; config changes make a release but
  nothing restarts; ``ps:scale`` to a new size does not restart dynos.
- Ranges: only domains paginate (``domains_page_size``); releases honour ``max``/``order`` only.
- Dynos follow the formation on fixed timers (``timings``) instead of real boots and SIGTERM
  grace periods; ``idle`` and ``crashed`` never occur unless written into the state.
- Backups: one local ``pg_dump -Fc`` per capture; no S3, no cancel, no restore/copy transfers,
  no retention. ``processed_bytes`` grows with elapsed time toward the dump's real size (real
  progress comes from pg_dump's output). A capture interrupted by stopping (or killing) the
  emulator is dumped again from the start when an emulator starts on that state. Seeded older
  scheduled backups get their dump file (of the data as it is then) in the background when the
  emulator starts, or else the first time their URL is asked for; the schedule never fires on
  its own, only through ``scheduled_backup_during_capture``. The Data API's database info is
  static (PG 15).
- The primary database is attached only as ``DATABASE`` (Heroku also attaches it as
  ``HEROKU_POSTGRESQL_<COLOR>``); a second database comes from :func:`add_postgres_attachment`.
  A transfer's ``from_name`` is its add-on's first attachment name.
- Older scheduled backups exist only with ``default_state(..., scheduled_backups=True)`` (the
  adapter tests count the transfers of a fresh app). If the dump of a seeded scheduled backup
  fails, its public URL still comes back but the download answers 404.
- Public backup URLs are ``https://127.0.0.1:<backup port>/backups/<token>/<file>`` and do not
  expire (``expires_at`` is informational).
"""

from cutover.sandbox.heroku_api.common import (
    ApiError,
    Request,
    Response,
    database_url,
)
from cutover.sandbox.heroku_api.emulator import Emulator
from cutover.sandbox.heroku_api.env import cli_env, prepare_home
from cutover.sandbox.heroku_api.routes_platform import parse_range
from cutover.sandbox.heroku_api.seed import (
    add_postgres_attachment,
    add_scheduled_backups,
    default_state,
)
from cutover.sandbox.heroku_api.server import EmulatorServers, main
from cutover.sandbox.heroku_api.state import load_state, save_state, update_state

__all__ = [
    "ApiError",
    "Emulator",
    "EmulatorServers",
    "Request",
    "Response",
    "add_postgres_attachment",
    "add_scheduled_backups",
    "cli_env",
    "database_url",
    "default_state",
    "load_state",
    "main",
    "parse_range",
    "prepare_home",
    "save_state",
    "update_state",
]
