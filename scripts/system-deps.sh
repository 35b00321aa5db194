#!/usr/bin/env bash
# Make sure the system tools cutover's sandbox and tests use are installed:
# PostgreSQL server + client (initdb, pg_ctl, pg_dump, pg_restore, psql), Knot DNS (knotd, kdig),
# unbound (recursive resolver), redis-server, Node.js >= 20 with npm (for the pinned heroku CLI). Installs missing Debian packages when it
# can (root, or passwordless sudo); otherwise prints exactly what to install and fails.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
pg_bin_ok() {
  have initdb && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

pg_bin_ok || missing+=(postgresql)
have pg_dump && have pg_restore && have psql || missing+=(postgresql-client)
have knotd || missing+=(knot)
have kdig || missing+=(knot-dnsutils)
# unbound: the local recursive resolver the DNS tests and the sandbox check propagation through.
have redis-server || missing+=(redis-server)
have unbound || [ -x /usr/sbin/unbound ] || missing+=(unbound)
if ! have node || [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then
  missing+=(nodejs)
fi
have npm || missing+=(npm)
# setpriv/runuser (util-linux) run PostgreSQL as the postgres user when the tests run as root.
have setpriv || missing+=(util-linux)
# MariaDB server + client: the sandbox's ClearDB and Convox mysql sides, and the MySQL data path
# (mariadb-dump, mariadb) of cutover/adapters/mysql.py (issue 14).
{ have mariadbd || [ -x /usr/sbin/mariadbd ]; } && have mariadb-install-db || missing+=(mariadb-server)
have mariadb && have mariadb-dump || missing+=(mariadb-client)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "system-deps: missing Debian packages: ${missing[*]}" >&2
apt=()
if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif have sudo && sudo -n true 2>/dev/null; then
  apt=(sudo -n apt-get)
fi
if [ ${#apt[@]} -eq 0 ] || ! have apt-get; then
  echo "system-deps: install them, then run make again:" >&2
  echo "    sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system-deps: installed ${missing[*]}" >&2
