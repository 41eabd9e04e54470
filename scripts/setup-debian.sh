#!/usr/bin/env bash
# Installs the Debian packages pgwarden's tests, demo and benchmarks use. Run as root (or with sudo).
set -euo pipefail
packages=(
  postgresql-15 postgresql-contrib   # the server, pg_stat_statements, pgstattuple
  postgresql-15-hypopg               # hypothetical indexes for index analysis
  pgbouncer                          # the pooler the pgbouncer probe watches
  pg-activity                        # the peer tool bench/refresh-cost compares with
  tmux                               # a real terminal for end-to-end tests
  zstd                               # WAL and backup compression (wal push)
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The packaged pgbouncer service is not needed: tests start their own instances.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi
