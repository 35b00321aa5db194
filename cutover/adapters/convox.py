"""Adapter for the ``convox`` v3 CLI.

The authority is the convox source (github convox/convox at the commit named in
``convox_cli.json``); every argv built here is checked against that file by
tests/adapters/test_convox_argv_facts.py.

* ``-a APP`` on app commands, and ``-r RACK`` when the rack is known (the CLI otherwise falls
  back to ``./.convox/app`` or the cwd's name). ``apps create NAME`` registers no ``-a``
  (pkg/cli/apps.go, structs.AppCreateOptions): it takes the name as its argument.
* ``version -r RACK`` asks that rack for its server version (pkg/cli/version.go, rack.Current
  honours ``-r``); without ``-r`` it asks the operator's current rack.
* stdin closed, except ``env set``, whose KEY=VALUE lines go through stdin only: secrets never
  appear in argv, and the CLI echoes key names only.
* Success is the exit code; errors are ``ERROR: <message>`` on stderr. ``services``/``ps``/
  ``scale`` may print ``ns=cli_budget`` noise on stderr while succeeding.
* Tables have two-space gutters and an unpadded last column and are parsed by header (``services``
  has a SCALE column on v3 racks); Info blocks are ``Key  Value``.
* ``run SVC --timeout N -- CMD`` (pkg/cli/run.go) starts a pod running ``sleep N`` and execs CMD
  in it; a killed CLI leaves both running on the rack until the sleep ends (the deferred
  ProcessStop never runs). ``ps --service S --release R`` lists that pod (COMMAND ``sleep N``).
* ``resources proxy`` never exits, prints its banner before binding and reports a bind failure
  only on stderr: it is started, probed on its TCP port, watched for ``ERROR:`` and always
  stopped.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cutover.adapters import convoxproxy
from cutover.adapters.convoxparse import env_lines, parse_info, parse_table
from cutover.errors import CommandError, CutoverError, ToolMissing, UnexpectedOutput
from cutover.runner import Classifier, Result, RetryPolicy, Runner
from cutover.runpipes import Background
from cutover.secrets import SecretMasker, register_config

INSTALL_HINT = "Install the convox CLI: https://docs.convox.com/getting-started/introduction"
_RELEASE_ID = re.compile(r"^R[A-Z]{6,}$")
# Seconds the CLI may take beyond `run --timeout` (pod scheduling, image pull, exec set-up).
RUN_GRACE = 300
# Seconds a resource's URL read in this process is reused when asked (resource_url(reuse=True)):
# as the heroku adapter's CREDENTIALS_MAX_AGE; the URL changes only with the resource.
URL_MAX_AGE = 900.0
# Network trouble as the CLI prints it (sandbox/convox_fake/faults.py has the sources): Go's
# dial errors ("connect: connection refused", "i/o timeout"), a dropped connection ("EOF",
# "connection reset by peer"), a 5xx from a load balancer (its page, or "response status N").
# The 5xx statuses are matched as whole numbers: a bare "503" also matched a port (127.0.0.1:45030)
# or any id holding those digits, so "bind: address already in use" was once retried.
_TRANSIENT = ("timeout", "connection refused", "connection reset", "EOF")
_TRANSIENT_5XX = re.compile(r"(?<![\w.:])50[234](?![\w.])|bad gateway|service unavailable")
# The CLI could not connect to the rack at all: no request was made, nothing changed.
_NOT_SENT = ("connect: connection refused", "no such host", "network is unreachable")


def _transient(result: Result) -> bool:
    err = result.stderr.lower()
    network = any(t.lower() in err for t in _TRANSIENT) or bool(_TRANSIENT_5XX.search(err))
    return network and "rollback" not in err


def _not_sent(result: Result) -> bool:
    """A dial error before the command's first request: safe to repeat any command."""
    err = result.stderr.lower()
    return any(t in err for t in _NOT_SENT) or bool(re.search(r"dial tcp \S+: i/o timeout", err))


def _truncated(result: Result) -> bool:
    """The runner kept only the end of stderr (runcapture.Tail): what came first is unknown."""
    return (
        result.stderr.startswith("[... ")
        and "earlier bytes of stderr dropped]" in (result.stderr.split("\n", 1)[0])
    )


def _ship_not_sent(result: Result) -> bool:
    """``build``/``deploy`` refused before the rack created a build (``Starting build... OK``
    is printed once ``BuildCreate`` returned: pkg/cli/builds.go): repeating starts no second
    build. A stderr whose start was dropped (a build log over the runner's bound) may have held
    that line: never repeated."""
    if _truncated(result):
        return False
    return _not_sent(result) and "Starting build... OK" not in result.stdout + result.stderr


def _promote_not_sent(result: Result) -> bool:
    """``releases promote`` refused before ``ReleasePromote``: pkg/cli/releases.go
    releasePromote makes AppGet (and may wait for the app) before it prints ``Promoting
    <release>`` and sends the promote, then waits for the rollout, where a refused poll comes
    after the promote was sent. A second promote would roll out again (and run the release
    command again), so only a refusal before that line is repeated."""
    if _truncated(result):
        return False
    return _not_sent(result) and "Promoting" not in result.stdout + result.stderr


def _table(result: Result, required: list[str]) -> list[dict[str, str]]:
    return parse_table(result.stdout, required, " ".join(result.argv_masked))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConvoxAdapter:
    def __init__(self, runner: Runner, masker: SecretMasker, app: str, rack: str | None) -> None:
        self.runner = runner
        self.masker = masker
        self.app = app
        self.rack = rack
        self._held = convoxproxy.Held()  # proxies kept for the run (hold_proxy)
        self._urls: dict[str, tuple[float, str]] = {}  # resource -> (monotonic time read, URL)
        self._urls_lock = threading.Lock()

    # -- argv --------------------------------------------------------------------------------
    def argv(self, *args: str, app: bool = True, after: tuple[str, ...] = ()) -> list[str]:
        """``convox ARGS -a APP -r RACK [-- AFTER]``: flags must come before ``--``."""
        out = ["convox", *args]
        if app:
            out += ["-a", self.app]
        if self.rack:
            out += ["-r", self.rack]
        if after:
            out += ["--", *after]
        return out

    def _run(
        self,
        *args: str,
        app: bool = True,
        input: str | None = None,
        timeout: float = 120,
        retry: Classifier | None = _transient,
        cwd: Path | None = None,
        after: tuple[str, ...] = (),
    ) -> Result:
        """Run ``convox ARGS``; failures ``retry`` classifies as transient are tried again
        (runner.RetryPolicy): any network trouble for reads and idempotent changes, only a
        refused connection for the others."""
        return self.runner.run(
            self.argv(*args, app=app, after=after),
            input=input,
            timeout=timeout,
            cwd=cwd,
            retry=RetryPolicy(retry) if retry is not None else None,
        )

    # -- rack and app ------------------------------------------------------------------------
    def version_argv(self) -> list[str]:
        """``convox version [-r RACK]``: with the rack known, the server version comes from that
        rack, so an unreachable *current* rack does not matter (pkg/cli/version.go)."""
        return ["convox", "version", *(["-r", self.rack] if self.rack else [])]

    def version(self) -> str:
        """The client version; a v2-era client (timestamp versions) is refused."""
        try:
            result = self.runner.run(self.version_argv(), timeout=60, retry=RetryPolicy(_transient))
        except ToolMissing:
            raise ToolMissing("the convox CLI is not installed", resolution=INSTALL_HINT) from None
        match = re.search(r"^client: (\S+)", result.stdout, re.M)
        if not match:
            raise UnexpectedOutput(
                "convox version printed no client version", details=result.stdout.strip()[:200]
            )
        client = match.group(1)
        if re.fullmatch(r"\d{14}", client):
            raise ToolMissing(
                f"convox CLI {client} is the v2 CLI; cutover needs v3", resolution=INSTALL_HINT
            )
        return client

    def current_rack(self) -> str:
        return self.runner.run(["convox", "switch"], timeout=60).stdout.strip()

    def rack_info(self) -> dict[str, str]:
        result = self._run("rack", app=False)
        info = parse_info(result.stdout)
        if "Name" not in info:
            raise UnexpectedOutput(f"{' '.join(result.argv_masked)} printed no Name row")
        return info

    def router(self) -> str:
        router = self.rack_info().get("Router", "").split("\n")[0].split(" ")[0]
        if not router:
            raise UnexpectedOutput("convox rack shows no Router; is the rack running?")
        return router

    def app_exists(self) -> bool:
        try:
            self._run("apps", "info")
        except CommandError as exc:
            if "not found" in exc.stderr_tail or "no such app" in exc.stderr_tail:
                return False
            raise
        return True

    def app_status(self) -> str:
        """``Status`` of ``apps info``: running, creating, updating, ... (pkg/cli/apps.go)."""
        return parse_info(self._run("apps", "info").stdout).get("Status", "")

    def create_app_argv(self) -> list[str]:
        """``convox apps create NAME [-r RACK]``: the name is the argument; the command
        registers no ``-a`` (pkg/cli/apps.go, structs.AppCreateOptions)."""
        return self.argv("apps", "create", self.app, app=False)

    def create_app(self, timeout: float = 2400) -> None:
        self.runner.run(self.create_app_argv(), timeout=timeout, retry=RetryPolicy(_not_sent))

    # -- env and releases ----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        text = self._run("env").stdout
        values: dict[str, str] = {}
        for line in text.splitlines():
            if "=" in line:
                key, _, value = line.partition("=")
                values[key] = value
        register_config(self.masker, values)
        return values

    def env_set(self, values: dict[str, str]) -> str:
        """Set values (stdin only) creating a release, not promoted; returns the release id."""
        payload = env_lines(values)
        # Each `env set` makes a release: repeated only when the first never reached the rack.
        result = self._run("env", "set", "--id", input=payload, retry=_not_sent)
        return self._release_id(result)

    def deploy(self, source: Path, manifest: str, description: str, timeout: float = 3600) -> str:
        """Build and promote ``source``; the description marks the build as this run's."""
        return self._ship("deploy", source, manifest, description, timeout)

    def build(self, source: Path, manifest: str, description: str, timeout: float = 3600) -> str:
        """Build without promoting; returns the new release id (``--id``)."""
        return self._ship("build", source, manifest, description, timeout)

    def _ship(
        self, verb: str, source: Path, manifest: str, description: str, timeout: float
    ) -> str:
        """``convox build|deploy DIR -m MANIFEST --id -d DESCRIPTION`` (pkg/cli/builds.go,
        deploy.go: the same BuildCreateOptions); returns the release id ``--id`` prints."""
        result = self._run(
            verb,
            str(source),
            "-m",
            manifest,
            "--id",
            "-d",
            description,
            timeout=timeout,
            retry=_ship_not_sent,
        )
        return self._release_id(result)

    def builds(self) -> list[dict[str, str]]:
        return _table(self._run("builds"), ["ID", "STATUS", "RELEASE"])

    def _release_id(self, result: Result) -> str:
        release = result.stdout.strip()
        if not _RELEASE_ID.match(release):
            match = re.search(r"^Release: (R[A-Z]+)$", result.stdout + result.stderr, re.M)
            if not match:
                raise UnexpectedOutput(
                    f"{' '.join(result.argv_masked)} printed no release id",
                    details="stdout: " + result.stdout[:200],
                )
            release = match.group(1)
        return release

    def releases(self) -> list[dict[str, str]]:
        return _table(self._run("releases"), ["ID", "STATUS", "BUILD"])

    def latest_release(self) -> str | None:
        """The newest release (``convox env`` reads this one, not the active one)."""
        rows = self.releases()
        return rows[0]["ID"] if rows else None

    def active_release(self) -> str | None:
        for row in self.releases():
            if row.get("STATUS") == "active":
                return row["ID"]
        return None

    def release_manifest(self, release: str) -> str:
        return self._run("releases", "manifest", release).stdout

    def promote(self, release: str, timeout: float = 2400) -> None:
        self._run("releases", "promote", release, timeout=timeout, retry=_promote_not_sent)

    # -- services and scale ----------------------------------------------------------------------
    def services(self) -> list[dict[str, str]]:
        return _table(self._run("services"), ["SERVICE", "DOMAIN"])

    def service_domain(self, service: str) -> str:
        for row in self.services():
            if row["SERVICE"] == service:
                if not row["DOMAIN"]:
                    break
                return row["DOMAIN"]
        raise CutoverError(
            f"convox services shows no domain for service {service!r}",
            resolution="Check that the service has a port in convox.yml.",
        )

    def scale_table(self) -> list[dict[str, str]]:
        """``convox scale`` read mode (pkg/cli/scale.go): SERVICE, DESIRED (the deployment's
        replicas), RUNNING (its processes), CPU, MEMORY, GPU, MIN, MAX, STATUS."""
        return _table(self._run("scale"), ["SERVICE", "DESIRED", "RUNNING"])

    def scale_argv(self, service: str, count: int) -> list[str]:
        """``convox scale SERVICE --count N -a APP [-r RACK]`` (pkg/cli/scale.go: imperative
        mode needs exactly one service; the rack sets the deployment's replicas,
        provider/k8s/service.go ``ServiceUpdate``; the CLI waits for the app to be running)."""
        return self.argv("scale", service, "--count", str(count))

    def scale(self, service: str, count: int, timeout: float = 2400) -> None:
        # An absolute count: the same however often it is set.
        self.runner.run(
            self.scale_argv(service, count), timeout=timeout, retry=RetryPolicy(_transient)
        )

    def processes(
        self, service: str | None = None, release: str | None = None
    ) -> list[dict[str, str]]:
        """``convox ps [--service S] [--release R]`` (pkg/cli/ps.go, structs.ProcessListOptions):
        ID, SERVICE, STATUS, RELEASE, STARTED, COMMAND."""
        args = ["ps"]
        if service:
            args += ["--service", service]
        if release:
            args += ["--release", release]
        return _table(self._run(*args), ["ID", "SERVICE", "STATUS", "COMMAND"])

    # -- resources -------------------------------------------------------------------------------
    def resource_url(self, name: str, *, reuse: bool = False) -> str:
        """``convox resources url NAME`` (a secret: masked). With ``reuse``, a URL read in this
        process less than :data:`URL_MAX_AGE` seconds ago (prefetch reads it before the window)
        is returned without a CLI call."""
        with self._urls_lock:
            known = self._urls.get(name)
        if reuse and known and time.monotonic() - known[0] < URL_MAX_AGE:
            return known[1]
        url = self._run("resources", "url", name).stdout.strip()
        self.masker.add(url)
        if "://" not in url:
            raise UnexpectedOutput(f"convox resources url {name} printed no URL")
        with self._urls_lock:
            self._urls[name] = (time.monotonic(), url)
        return url

    def proxy_argv(self, resource: str, port: int | str) -> list[str]:
        return self.argv("resources", "proxy", resource, "--port", str(port))

    def _proxy_args(self, resource: str, timeout: float, speaks: str | None) -> dict[str, Any]:
        return {
            "info_argv": self.argv("resources", "info", resource),
            "transient": _transient,
            "timeout": timeout,
            "ports": lambda: free_port(),  # noqa: PLW0108 - looked up per call (tests replace it)
            "hello": convoxproxy.HELLO.get(speaks or ""),
        }

    @contextlib.contextmanager
    def proxy(self, resource: str, timeout: float = 30, speaks: str | None = None) -> Iterator[int]:
        """Run ``convox resources proxy`` on a free local port; yield the port; always stop it
        (cutover/adapters/convoxproxy.py: probed, restarted on network trouble). ``speaks``
        (the resource's protocol: a key of convoxproxy.HELLO, "postgres") lets the probe send a
        first message that a working tunnel answers at once, instead of waiting to see it stay
        open; any other protocol is probed by waiting. A proxy of ``resource`` held for the run
        (:meth:`hold_proxy`) is used instead while it works (convoxproxy.Held)."""
        argv = self.proxy_argv(resource, "{port}")
        args = self._proxy_args(resource, timeout, speaks)
        held = self._held.get(resource, args["hello"])
        if held is not None:
            with convoxproxy.in_use(self.masker, resource, held[0]):
                yield held[1]
            return
        bg, port = convoxproxy.start(self.runner, self.masker, argv, resource, **args)
        with bg, convoxproxy.in_use(self.masker, resource, bg):
            yield port

    def hold_proxy(self, resource: str, speaks: str | None = None, timeout: float = 30) -> int:
        """Start a proxy of ``resource`` that :meth:`proxy` uses until :meth:`close` (the end
        of the run) stops it; its port. Called from the run's main thread: a child gets SIGTERM
        when the thread that started it ends (runner._die_with_parent; prctl(2)
        PR_SET_PDEATHSIG follows the thread), so one started by a worker thread would die
        with that thread."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("hold_proxy must be called from the main thread")
        argv = self.proxy_argv(resource, "{port}")
        args = self._proxy_args(resource, timeout, speaks)
        bg, port = convoxproxy.start(self.runner, self.masker, argv, resource, **args)
        self._held.add(resource, bg, port)
        return port

    def close(self) -> None:
        """Stop the proxies held for the run (:meth:`hold_proxy`)."""
        self._held.close()

    def run_argv(
        self, service: str, command: str, release: str | None, timeout: int | None
    ) -> list[str]:
        """``convox run SVC [--release R] [--timeout N] -a APP [-r RACK] -- COMMAND``
        (pkg/cli/run.go: the pod runs ``sleep N``, N defaulting to 3600, and COMMAND is exec'd
        in it)."""
        args = ["run", service]
        if release:
            args += ["--release", release]
        if timeout:
            args += ["--timeout", str(timeout)]
        return self.argv(*args, after=(command,))

    def run_command(
        self, service: str, command: str, release: str | None = None, timeout: int = 3600
    ) -> Result:
        """Run a one-off; the CLI gets ``timeout`` plus a grace for the pod to start, since the
        rack itself ends the command after ``timeout`` seconds."""
        return self.runner.run(
            self.run_argv(service, command, release, timeout), timeout=timeout + RUN_GRACE
        )

    def start_run(self, service: str, command: str, stdin: str, timeout: int) -> Background:
        """Start ``convox run SVC --timeout N -a APP [-r RACK] -- COMMAND`` in the background
        with ``stdin`` as its input (secrets go there, never in argv). Not a terminal, so the
        CLI execs with Tty false and forwards stdin; the command's stdout and stderr come back
        merged on stdout and the CLI exits with the command's code (pkg/cli/run.go ``Run``,
        provider/k8s/process.go ``ProcessExec``). At 9e02452 the rack copies stdin into the
        exec stream without ever closing it, so the command never sees end of input: it must
        read exactly what it needs. The caller watches it and must ``stop()`` it."""
        return self.runner.start(self.run_argv(service, command, None, timeout), input=stdin)

    # -- certificates (pkg/cli/certs.go; rack-level commands: no -a) -------------------------
    # ``certs [--generated]`` prints ``ID  DOMAIN  EXPIRES  Status`` (Status "Ready" unless the
    # rack says otherwise; --generated adds cert-manager certificates still "Not Ready":
    # provider/k8s/certificate.go generatedCertificateList). ``certs import <pub> <key>
    # [--chain F] --id`` and ``certs generate <domain> --issuer letsencrypt --id`` print only
    # the certificate id on stdout with ``--id``. The key travels as a file path in argv: the
    # CLI reads the file (os.ReadFile), so the key itself is never on a command line.
    def certs_argv(self, *, generated: bool = False) -> list[str]:
        return self.argv("certs", *(["--generated"] if generated else []), app=False)

    def certificates(self, *, generated: bool = False) -> list[dict[str, str]]:
        result = self.runner.run(self.certs_argv(generated=generated), timeout=120)
        return _table(result, ["ID", "DOMAIN", "EXPIRES", "Status"])

    def certs_import_argv(self, pub: str, key: str, chain: str | None) -> list[str]:
        extra = ["--chain", chain] if chain else []
        return self.argv("certs", "import", pub, key, *extra, "--id", app=False)

    def certs_import(self, pub: Path, key: Path, chain: Path | None) -> str:
        argv = self.certs_import_argv(str(pub), str(key), str(chain) if chain else None)
        return self._certificate_id(self.runner.run(argv, timeout=300))

    def certs_generate_argv(self, domain: str) -> list[str]:
        return self.argv("certs", "generate", domain, "--issuer", "letsencrypt", "--id", app=False)

    def certs_generate(self, domain: str) -> str:
        return self._certificate_id(self.runner.run(self.certs_generate_argv(domain), timeout=300))

    def _certificate_id(self, result: Result) -> str:
        ident = result.stdout.strip()
        if not re.fullmatch(r"cert-[a-z0-9-]+", ident):
            raise UnexpectedOutput(
                "convox printed no certificate id", details=result.stdout.strip()[:200]
            )
        return ident

    def route53_solvers(self) -> list[dict[str, str]]:
        """``letsencrypt dns route53 list``: ID, DNS-ZONES, HOSTED-ZONE-ID, REGION, ROLE."""
        argv = self.argv("letsencrypt", "dns", "route53", "list", app=False)
        return _table(self.runner.run(argv, timeout=120), ["ID", "DNS-ZONES"])

    def route53_add_argv(
        self,
        solver_id: int,
        zones: list[str],
        role: str,
        hosted_zone_id: str | None = None,
        region: str | None = None,
    ) -> list[str]:
        args = ["--id", str(solver_id), "--dns-zones", ",".join(zones), "--role", role]
        if hosted_zone_id:
            args += ["--hosted-zone-id", hosted_zone_id]
        if region:
            args += ["--region", region]
        return self.argv("letsencrypt", "dns", "route53", "add", *args, app=False)

    def route53_add(
        self,
        solver_id: int,
        zones: list[str],
        role: str,
        hosted_zone_id: str | None = None,
        region: str | None = None,
    ) -> None:
        argv = self.route53_add_argv(solver_id, zones, role, hosted_zone_id, region)
        self.runner.run(argv, timeout=300)
