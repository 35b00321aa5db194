"""A stand-in for the ``convox`` v3 CLI and its rack, for cutover's tests, demo and rehearsals.

The real CLI cannot run here, so this package behaves like it for every command cutover uses:
same stdout and stderr text, same tables, same ``ERROR:`` lines and exit codes, read from the
convox source (``github.com/convox/convox`` at the commit named in
``cutover/adapters/convox_cli.json``; each module cites the files it follows). Run it as
``python -m cutover.sandbox.convox_fake ...`` or through the ``convox`` shim written by
:func:`install_shim`. Command lines are parsed with the shared facts
(:mod:`cutover.adapters.convox_cli`): what the real CLI refuses is refused with its text.

Modules, one per concern: :mod:`.dispatch` (command line, refusals, command table),
:mod:`.output` (tables, info blocks, times), :mod:`.store` (state file, lock, configuration,
timings), :mod:`.model` (racks, apps, releases, builds, env), :mod:`.manifest` (``convox.yml``),
:mod:`.resources` and :mod:`.provision` (resource URLs; creation at the first promote),
:mod:`.runtime` (web and worker processes, pods), :mod:`.pods` (``convox run`` pods),
:mod:`.jobs` (rack-side work: :mod:`.buildjob`, :mod:`.rollout`, :mod:`.certs`,
:mod:`.timers`),
:mod:`.waits` (what the CLI waits for), :mod:`.faults`, and the ``cmd_*`` modules.

Like a real rack (and unlike the first versions of this stand-in):

* builds and promotes run on the rack, as detached processes: a killed CLI does not stop them,
  and ``convox builds`` / ``apps info`` show them while they run;
* ``convox run`` execs in a pod that sleeps ``--timeout``; a killed CLI leaves the command
  running; before an app's first promote the pod is refused;
* resources exist only from the first promote that declares them, are created empty, and
  accept connections only some seconds after the deploy returns;
* workers (every service the router does not serve) run as real processes; a promote gives
  each service ``CoalesceInt(runtime count, scale.count.min)`` processes (a runtime 0 does not
  survive a promote, ``scale.count: 0`` in the manifest does: provider/k8s/release.go), and
  ``scale`` shows the manifest's MIN/MAX and COLD for a service at 0 by its manifest
  (provider/k8s/service.go ``ServiceList``);
* a custom domain has a valid certificate only once its name resolves to the router.

Rack timings (seconds, :data:`.store.DEFAULT_TIMINGS`, set with ``configure_rack(timings=)`` or
``manager.up(rack_timings=)``): ``build_created`` 1, ``build_running`` 4, ``rollout`` 3,
``resource_start`` 8, ``poll`` 1 (the CLI's poll interval), ``process_wait`` 300,
``certificate`` 2, ``timer_minute`` 60. None may be zero.

Deliberate differences from a real rack:

* No images are built and no containers run: a build reads and validates ``convox.yml`` and
  prints ``Building:``/``Running: docker pull`` lines; the routed web service runs
  :mod:`cutover.sandbox.sampleapp` and every other service :mod:`cutover.sandbox.sampleworker`,
  whatever their ``command``; ``convox run`` runs the command on this machine, in the build's
  source folder, with the service's env (only PATH, HOME, LANG, LC_*, TZ, TMPDIR, PYTHONPATH
  of the caller pass through).
* One router port serves one app's web service (one process, however many pods ``ps`` shows);
  a promote stops the old web process before it starts the new one (a short gap).
* Only ``postgres``-family resources get a real database, and only with a backend configured
  with admin access (the sandbox's Convox cluster); other resources get the configured
  backend's URL or none. The sandbox runs one PostgreSQL major version: another declared
  version (postgres' default is 10.5) is refused at the promote, as a sandbox limit; PostGIS is
  not available. ``rds-postgres`` is a role with CREATEDB and CREATEROLE, not rds_superuser.
  Until a resource is up its database does not exist (connections fail with an authentication
  or database error rather than a refused TCP connection); ``resources proxy`` refuses.
* Status polls are timed by the ``poll`` timing (the real app wait polls every 5 s); app status
  output while waiting is reduced to the pod lines.
* A missing resource config map makes ``run`` wait ``process_wait`` and fail with ``timeout``
  (a real pod would show CreateContainerConfigError meanwhile).
* Certificates come from the sandbox CA once the sandbox DNS server answers the name's CNAME
  with the router host (no HTTP challenge is made). ``certs``, ``certs import``, ``certs
  generate`` and ``letsencrypt dns route53 add/list`` are emulated (:mod:`.cmd_certs`); a
  DNS-01 issuance makes no DNS change, it only needs a Route53 solver listing the zone.
* Timers (:mod:`.timers`) fire the command on this machine, in the build's source folder
  with the service's env (not in a pod of the service's image), and ``ps`` does not list
  their runs; a cron minute is the rack timing ``timer_minute`` (60 s).
* Commands cutover does not use are refused with ``the convox stand-in does not emulate``.
"""

from cutover.sandbox.convox_fake.dispatch import main
from cutover.sandbox.convox_fake.output import table
from cutover.sandbox.convox_fake.runtime import stop_processes
from cutover.sandbox.convox_fake.store import (
    STATE_FILE,
    VERSION,
    PostgresBackend,
    RedisBackend,
    Router,
    Store,
    add_fault,
    configure_rack,
    install_shim,
    read_state,
    settings_dir,
)

__all__ = [
    "STATE_FILE",
    "VERSION",
    "PostgresBackend",
    "RedisBackend",
    "Router",
    "Store",
    "add_fault",
    "configure_rack",
    "install_shim",
    "main",
    "read_state",
    "settings_dir",
    "stop_processes",
    "table",
]
