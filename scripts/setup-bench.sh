#!/usr/bin/env bash
# Installs what bench/backup.ts compares pgwarden with: pgBackRest (Debian package), plus zstd and
# pgbench, which the benchmark also uses. Idempotent: installs only what is missing. Run as root.
set -euo pipefail
packages=(
  pgbackrest            # the peer tool of bench/backup.ts
  zstd                  # pgwarden's compression program
  postgresql-contrib    # pgbench (in postgresql-client on newer Debian; contrib pulls it in)
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
pgbackrest version
