"""The shell script the in-rack copy runs inside the rack (``convox run <service>``).

It runs in the ``postgres:<major>`` image of the playbook's ``database.in_rack_service`` (the
build tags ``FROM <image>`` as the service's image: pkg/build/docker.go, buildkit.go), with the
service's env, which holds the linked resource's ``<NAME>_HOST/_PORT/_USER/_PASS`` (resource
``database`` -> ``DATABASE_*``: pkg/manifest/resource.go ``mountEnv``, the ``resource-<name>``
config map of provider/k8s/template/resource/postgres.yml.tmpl).

Secrets: the Heroku connection arrives on stdin, one field a line (host, port, user, password,
database, sslmode), read with ``read`` and exported only into the pg_dump subshell; the target's
password stays in the pod's env. No password is ever in an argv, not even inside the pod, where
every container shares one process namespace (provider/k8s/process.go ``ShareProcessNamespace``).
Exactly six lines are read: the rack never closes the command's stdin (provider/k8s/process.go
``ProcessExec``: ``go io.Copy(inw, rw)``, ``inw`` never closed), so nothing may read to its end.

The pipeline streams, with no copy of the data on disk::

    pg_dump -Fc | tee toc.fifo count.fifo | pg_restore --use-list list.fifo -d <target db>

pg_restore reads the archive's TOC (a custom archive written to a pipe carries its TOC before
the data), then opens ``--use-list`` (pg_restore.c: ``OpenArchive`` before ``SortTocFromFile``),
a FIFO the lister branch writes once it has read the same TOC with ``pg_restore -l`` and
commented out the entries of skipped extensions and of cutover's change capture (schema
``_cutover`` and the ``cutover_capture*`` triggers, issue 13); the order is kept, so a
non-seekable archive restores. The third branch counts the bytes. Each pipeline stage's exit
code goes to a file (POSIX sh has no pipefail).

Output, all on stdout (``exec 2>&1``: provider/k8s/process.go streams with ``Tty`` true
whenever stdin is forwarded, and client-go then opens no stderr stream, remotecommand/v2.go;
stdout is what surely comes back): pg_restore's ``--verbose`` lines (one per TOC entry, large
objects counted instead) and lines starting with ``cutover-inrack:`` (:data:`MARKER`):
``start``, ``skip-extension NAME``, ``objects N``, ``entries N`` (large objects' TOC entries
restored so far), ``failed STAGE CODE`` and, last, ``done bytes=B objects=N seconds=S``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

MARKER = "cutover-inrack:"
# Names cutover puts into the script: checked here, so the script needs no quoting of its own.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_ENV_PREFIX = re.compile(r"[A-Z_][A-Z0-9_]*")

_TEMPLATE = r"""exec 2>&1
set -u
umask 077
say() { echo "__MARKER__ $*"; }
IFS= read -r SRC_HOST && IFS= read -r SRC_PORT && IFS= read -r SRC_USER &&
  IFS= read -r SRC_PASS && IFS= read -r SRC_DB && IFS= read -r SRC_SSL ||
  { say "failed input 64"; exit 64; }
# The pod has the app's env too: no libpq variable of the app's may steer the copy.
for v in $(env | sed -n 's/^\(PG[A-Z0-9_]*\)=.*/\1/p'); do unset "$v"; done
TARGET_DB=__TARGET_DB__
SKIP="__SKIP__"
if [ -z "${__P___HOST:-}" ] || [ -z "${__P___USER:-}" ]; then
  say "failed env 65"; echo "__P___HOST/__P___USER are not set: is the resource linked?"
  exit 65
fi
src() { (
  export PGHOST="$SRC_HOST" PGPORT="$SRC_PORT" PGUSER="$SRC_USER" PGPASSWORD="$SRC_PASS"
  export PGDATABASE="$SRC_DB" PGSSLMODE="$SRC_SSL" PGAPPNAME=cutover-inrack PGCONNECT_TIMEOUT=15
  exec "$@"
) }
dst() { (
  unset PGSSLMODE PGSERVICE
  export PGHOST="$__P___HOST" PGPORT="${__P___PORT:-5432}" PGUSER="$__P___USER"
  export PGPASSWORD="${__P___PASS:-}" PGDATABASE="$TARGET_DB" PGAPPNAME=cutover-inrack
  export PGCONNECT_TIMEOUT=15
  exec "$@"
) }
T=$(mktemp -d) || { say "failed setup 70"; exit 70; }
trap 'rm -rf "$T"' EXIT
mkfifo "$T/toc" "$T/count" "$T/list" || { say "failed setup 70"; exit 70; }
STARTED=$(date +%s)
say start
SKIPPED=""
CAN="SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extension_versions v"
CAN="$CAN WHERE v.name = '%s' AND (v.trusted OR (SELECT rolsuper FROM pg_catalog.pg_roles"
CAN="$CAN WHERE rolname = current_user)))"
for e in $SKIP; do
  # shellcheck disable=SC2059
  ok=$(dst psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$(printf "$CAN" "$e")" < /dev/null) ||
    { say "failed target-check 66"; exit 66; }
  if [ "$ok" != t ]; then SKIPPED="$SKIPPED $e"; say "skip-extension $e"; fi
done
(
  if pg_restore -l -f "$T/toc.txt" 2>"$T/list.err"; then
    # awk, not a `read` loop: the list has a line per large object, and sh reads byte-wise.
    n=$(awk -v skip="$SKIPPED" -v out="$T/list.txt" '
      BEGIN { k = split(skip, s, " ") }
      { line = $0; t = $0 " "
        # the change capture of cutover on Heroku (issue 13: schema _cutover, its objects and
        # the cutover_capture* triggers) never reaches the copy, as in pgrestore.filter_list.
        if (t ~ /^[0-9]+; [0-9]+ [0-9]+ ([A-Z][A-Z ]* )?(- )?(SCHEMA )?_cutover / ||
            t ~ /^[0-9]+; [0-9]+ [0-9]+ TRIGGER .* cutover_capture[a-z_]* /) line = ";" $0
        for (i = 1; i <= k; i++)
          if (index(t, " EXTENSION - " s[i] " ") || index(t, " COMMENT - EXTENSION " s[i] " ") ||
              index(t, " COMMENT - EXTENSION \"" s[i] "\" ")) { line = ";" $0; break }
        print line > out
        if (line != "" && substr(line, 1, 1) != ";") n++ }
      END { close(out); print n + 0 }' "$T/toc.txt") || n=""
    [ -n "$n" ] || { echo 1 > "$T/list.rc"; : > "$T/list"; cat > /dev/null; exit; }
    say "objects $n"
    cat "$T/list.txt" > "$T/list"
  else
    echo 1 > "$T/list.rc"; cat "$T/list.err"; : > "$T/list"
  fi
  cat > /dev/null
) < "$T/toc" &
LISTER=$!
wc -c < "$T/count" > "$T/bytes" &
COUNTER=$!
{ src pg_dump -Fc --no-owner --no-acl < /dev/null; echo $? > "$T/dump.rc"; } |
  tee "$T/toc" "$T/count" |
  { dst pg_restore --verbose --no-owner --no-acl --exit-on-error --use-list "$T/list" \
      -d "$TARGET_DB" 2>&1; echo $? > "$T/restore.rc"; } |
  awk '/^pg_restore: creating (BLOB|LARGE OBJECT) / { n++; if (n % 1000 == 0) lo(); next }
    /^pg_restore: restoring large object with OID / { next }
    { print; fflush() }
    function lo() { print "__MARKER__ entries " n; fflush() }
    END { if (n % 1000) lo() }'
# A restore that died before opening the list leaves the lister blocked opening it: read it.
cat "$T/list" > /dev/null 2>&1 &
DRAIN=$!
wait "$LISTER"
kill "$DRAIN" 2>/dev/null
wait "$COUNTER"
rc() { if [ -s "$T/$1.rc" ]; then cat "$T/$1.rc"; else echo 1; fi; }
# A restore that stops early makes tee, then pg_dump, die of SIGPIPE (141): blame the restore.
dump=$(rc dump); restore=$(rc restore)
if [ "$dump" != 0 ] && [ "$dump" != 141 ]; then say "failed dump $dump"; exit "$dump"; fi
[ -e "$T/list.rc" ] && { say "failed list 1"; exit 1; }
[ "$restore" = 0 ] || { say "failed restore $restore"; exit "$restore"; }
[ "$dump" = 0 ] || { say "failed dump $dump"; exit "$dump"; }
OBJECTS=$(grep -c -v -e '^;' -e '^$' "$T/list.txt")
say "done bytes=$(tr -dc 0-9 < "$T/bytes") objects=$OBJECTS seconds=$(( $(date +%s) - STARTED ))"
"""


def build_script(env_prefix: str, target_dbname: str, skip_extensions: Sequence[str]) -> str:
    """The script for a resource whose env vars start with ``env_prefix`` (``DATABASE``)."""
    if not _ENV_PREFIX.fullmatch(env_prefix):
        raise ValueError(f"not an environment variable prefix: {env_prefix!r}")
    for name in [target_dbname, *skip_extensions]:
        if not _NAME.fullmatch(name):
            raise ValueError(f"unexpected characters in a database or extension name: {name!r}")
    return (
        _TEMPLATE.replace("__MARKER__", MARKER)
        .replace("__TARGET_DB__", target_dbname)
        .replace("__SKIP__", " ".join(skip_extensions))
        .replace("__P__", env_prefix)
    )


def run_command(script: str) -> str:
    """The one word given to ``convox run``: the CLI joins its arguments with spaces and the
    rack splits them again with shellquote (pkg/cli/run.go, provider/k8s/process.go
    ``ProcessExec``), so the script travels as one single-quoted ``sh -c`` argument."""
    return "sh -c " + shlex.quote(script)


def stdin_payload(host: str, port: int, user: str, password: str, dbname: str, sslmode: str) -> str:
    """The six lines the script reads first (see the module docstring)."""
    fields = [host, str(port), user, password, dbname, sslmode]
    if any("\n" in f or "\r" in f for f in fields):
        raise ValueError(
            "the Heroku database URL holds a line break in a field (host, user, password or "
            "database name)"
        )
    return "".join(f + "\n" for f in fields)
