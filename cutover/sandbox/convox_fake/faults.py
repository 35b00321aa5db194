"""Faults: scripted failures a test injects into the next run(s) of a command.

Stored in the rack state (``faults``, added by :func:`cutover.sandbox.convox_fake.add_fault`),
consumed by the command they name, and recorded in ``faults_fired`` (command and kind) when they
fire, so a test can show that each one did. :func:`remove` takes them away again.

The builders below give what the real CLI shows for network trouble, from its source
(github.com/convox/convox at 9e02452):

* every command talks to the rack through ``stdsdk`` (vendor/github.com/convox/stdsdk/
  client.go): ``DefaultClient.Do`` errors are returned as they are, and stdcli prints any error
  as ``ERROR: <err>`` and exits 1 (vendor/github.com/convox/stdcli/context.go ``Fail``,
  writer.go ``Error``). Go's ``*url.Error`` reads ``<Op> "<url>": <err>`` with Op ``Get``,
  ``Post``... (net/http client.go ``urlErrorOp``), the dial error
  ``dial tcp <ip>:<port>: connect: connection refused`` or, after the 30 s dial timeout of
  ``DefaultClient``, ``dial tcp <ip>:<port>: i/o timeout``; :func:`refused`, :func:`dial_timeout`;
* a reply of status >= 400 becomes its JSON ``error`` field, else its trimmed body, else
  ``response status <N>`` (client.go ``responseError``): a load balancer's 502 page comes out as
  its HTML, an empty 503 as ``response status 503``; :func:`server_error`;
* a connection dropped mid-reply: ``<Op> "<url>": EOF`` (or ``unexpected EOF``);
  :func:`dropped`;
* ``DefaultClient`` has no overall timeout: a rack that accepts and never answers leaves the
  CLI waiting forever; :func:`hang_fault`;
* ``convox build``/``deploy`` on a rack whose build fails: the build pod prints
  ``ERROR: <err>`` into the build log (pkg/build/build.go ``fail``; a failing ``docker build``
  is ``exit status 1``) and marks the build ``failed``; the CLI, after streaming the log, reads
  the status and fails with ``build failed`` (pkg/cli/builds.go ``build()``), exit 1;
  :func:`build_failed` (applied on the rack by :mod:`.buildjob`);
* ``resources proxy`` keeps running when one proxied connection fails: each connection is a
  websocket to the rack (sdk/methods.go ``Proxy``); a dial error is printed with
  ``c.Error`` (``ERROR: ...``, no exit: pkg/cli/proxy.go ``proxyConnection``), and a websocket
  dropped mid-stream just closes the local connection, silently (stdsdk stream_helper.go
  ``copyFromWS`` closes the pipe and its error is discarded, so ``Proxy`` returns nil).
  These are faults of the proxy's *connections* (command ``resources proxy:connection``),
  consumed when a connection opens (:func:`proxy_refused`) or when it has carried a number of
  bytes (:func:`proxy_drop`).

Keys of a fault (:func:`take`): ``command``; ``times`` (default 1; -1 = forever); ``sleep``
(seconds, first); ``stdout``/``stderr`` (written verbatim); ``exit`` (default 1 when stdout,
stderr or exit is given: the command is replaced); ``hang`` (block until killed, after the
output); ``hang_before_listen`` (resources proxy: print the banner, then block without
listening); ``build_error`` (build/deploy: the rack's build fails with it); ``refuse`` and
``drop_after_bytes`` (``resources proxy:connection``); ``kind`` (a name for the record).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NoReturn

from cutover.sandbox.convox_fake.output import Out
from cutover.sandbox.convox_fake.store import Json, Store

PROXY_CONNECTION = "resources proxy:connection"
# The rack API endpoint in the emulated Go errors (the real one is the rack's, from the CLI's
# rack settings); 127.0.0.1 keeps every text loopback.
RACK_ENDPOINT = "https://127.0.0.1:5443"
RACK_DIAL = "127.0.0.1:5443"
LB_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>"
)


def _url_error(op: str, path: str, err: str) -> str:
    return f'ERROR: {op} "{RACK_ENDPOINT}{path}": {err}\n'


def refused(command: str, *, times: int = 1, op: str = "Get", path: str = "/apps") -> Json:
    """The rack API refuses the connection: the request never left this machine."""
    text = _url_error(op, path, f"dial tcp {RACK_DIAL}: connect: connection refused")
    return {"command": command, "kind": "refused", "stderr": text, "exit": 1, "times": times}


def dial_timeout(
    command: str, *, times: int = 1, seconds: float = 0, op: str = "Get", path: str = "/apps"
) -> Json:
    """The dial times out (30 s in the real client; ``seconds`` here, 0 by default)."""
    text = _url_error(op, path, f"dial tcp {RACK_DIAL}: i/o timeout")
    fault: Json = {"command": command, "kind": "timeout", "stderr": text, "exit": 1}
    return {**fault, "times": times, "sleep": seconds}


def server_error(command: str, *, status: int = 502, times: int = 1) -> Json:
    """A 5xx from a load balancer in front of the rack (its HTML page) or, for other statuses,
    an empty body (``response status N``)."""
    body = LB_502 if status == 502 else f"response status {status}"
    return {
        "command": command,
        "kind": f"http {status}",
        "stderr": f"ERROR: {body}\n",
        "exit": 1,
        "times": times,
    }


def dropped(command: str, *, times: int = 1, op: str = "Get", path: str = "/apps") -> Json:
    """The rack closed the connection before answering."""
    text = _url_error(op, path, "EOF")
    return {"command": command, "kind": "eof", "stderr": text, "exit": 1, "times": times}


def hang_fault(command: str, *, times: int = 1) -> Json:
    """The rack accepts and never answers: the CLI waits until it is killed."""
    return {"command": command, "kind": "hang", "hang": True, "times": times}


def build_failed(command: str = "deploy", *, times: int = 1, error: str = "exit status 1") -> Json:
    """The build fails on the rack (``ERROR: <error>`` in its log; the CLI: ``build failed``)."""
    return {"command": command, "kind": "build failed", "build_error": error, "times": times}


def proxy_refused(*, times: int = 1) -> Json:
    """A proxied connection cannot reach the rack (``ERROR: dial tcp ...: connection refused``
    on the proxy's stderr; the local connection is closed; the proxy keeps running)."""
    return {"command": PROXY_CONNECTION, "kind": "proxy refused", "refuse": True, "times": times}


def proxy_drop(after_bytes: int, *, times: int = 1) -> Json:
    """A proxied connection is dropped, silently, once it has carried ``after_bytes`` bytes
    (client to server): a restore through it loses its server mid-copy."""
    return {
        "command": PROXY_CONNECTION,
        "kind": "proxy drop",
        "drop_after_bytes": after_bytes,
        "times": times,
    }


def hang() -> NoReturn:
    """Block forever, like the real proxy's main goroutine; only a signal ends it."""
    while True:
        time.sleep(3600)


def take(store: Store, name: str, *, only: str | None = None) -> Json | None:
    """Consume the first fault for ``name`` (with the key ``only``, when given) and record it
    in ``faults_fired``."""
    with store.locked() as state:
        queued: list[Json] = state.get("faults") or []
        for index, fault in enumerate(queued):
            if fault.get("command") != name or (only is not None and only not in fault):
                continue
            times = int(fault.get("times", 1))
            if times in (0, 1):
                del queued[index]
            elif times > 1:
                fault["times"] = times - 1
            state.setdefault("faults_fired", []).append(
                {"command": name, "kind": str(fault.get("kind", "scripted"))}
            )
            return dict(fault)
    return None


def pending(store: Store, name: str, key: str) -> Json | None:
    """The first queued fault for ``name`` holding ``key``, without consuming it."""
    with store.locked() as state:
        for fault in state.get("faults") or []:
            if fault.get("command") == name and key in fault:
                return dict(fault)
    return None


def remove(config_dir: Path, command: str | None = None, kind: str | None = None) -> int:
    """Remove the queued faults for ``command`` (of ``kind``, when given; every fault without
    either); return how many."""
    with Store(config_dir).locked() as state:
        queued: list[Json] = state.get("faults") or []
        kept = [
            f
            for f in queued
            if not (
                (command is None or f.get("command") == command)
                and (kind is None or f.get("kind") == kind)
            )
        ]
        state["faults"] = kept
        return len(queued) - len(kept)


def fired(config_dir: Path) -> list[Json]:
    """The faults that fired so far (command, kind), oldest first."""
    with Store(config_dir).locked() as state:
        return [dict(f) for f in state.get("faults_fired") or []]


def fire(fault: Json, out: Out) -> int | None:
    """Apply the generic part of a fault; an exit code if it replaces the command."""
    if fault.get("sleep"):
        time.sleep(float(fault["sleep"]))
    replaces = any(key in fault for key in ("stdout", "stderr", "exit"))
    if "stdout" in fault:
        out.write(str(fault["stdout"]))
    if "stderr" in fault:
        out.stderr.write(str(fault["stderr"]))
        out.stderr.flush()
    if fault.get("hang"):
        hang()
    return int(fault.get("exit", 1)) if replaces else None
