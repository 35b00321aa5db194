#!/usr/bin/env bash
# What `make bench` needs on top of scripts/system-deps.sh: pgcopydb (Debian package `pgcopydb`,
# 0.10 in bookworm), one of the baselines the benchmark measures cutover against (issue 10).
# pgbench comes with the PostgreSQL server package system-deps.sh installs
# (/usr/lib/postgresql/<major>/bin/pgbench). Installs when it can (root, or passwordless sudo);
# otherwise prints the command and fails.
set -euo pipefail

command -v pgcopydb >/dev/null 2>&1 && exit 0

apt=()
if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt=(sudo -n apt-get)
fi
if [ ${#apt[@]} -eq 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: pgcopydb is missing; install it, then run make bench again:" >&2
  echo "    sudo apt-get install -y pgcopydb" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt[@]}" install -y -qq --no-install-recommends pgcopydb >/dev/null
echo "bench-deps: installed pgcopydb" >&2
