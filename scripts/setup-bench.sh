#!/usr/bin/env bash
# Installs what the benchmarks compare pgwarden with: pgBackRest for bench/backup.ts, Patroni and etcd
# for bench/failover-patroni.ts (Debian packages), plus zstd and pgbench, which the benchmarks also
# use. Idempotent: installs only what is missing. Run as root.
set -euo pipefail
packages=(
  pgbackrest            # the peer tool of bench/backup.ts
  zstd                  # pgwarden's compression program
  postgresql-contrib    # pgbench (in postgresql-client on newer Debian; contrib pulls it in)
  patroni               # the peer tool of bench/failover-patroni.ts
  etcd-server           # Patroni's DCS for that benchmark (a throwaway single node, v3 API)
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
patroni --version
etcd --version | head -n 1
