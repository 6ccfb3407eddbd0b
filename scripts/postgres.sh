#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, the benchmark and trying several instances locally.
#
#   scripts/postgres.sh start   initdb in a temporary folder, start on 127.0.0.1:$PGPORT (55432), create
#                               the database minigate; prints the URL to use as MINIGATE_DB/MINIGATE_TEST_PG
#   scripts/postgres.sh stop    stop it and delete its folder
#
# Uses PostgreSQL from the machine's packages (Debian: apt-get install postgresql). PostgreSQL refuses to
# run as root, so as root the server runs as the `postgres` user. Durability is off (fsync=off): it is for
# tests and experiments only, never for data you keep.
set -euo pipefail
port=${PGPORT:-55432}
dir=${MINIGATE_PG_DIR:-/tmp/minigate-postgres-$port}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] && command -v pg_ctl >/dev/null; then bin=$(dirname "$(command -v pg_ctl)"); fi
[ -n "$bin" ] || { echo "postgres.sh: PostgreSQL is not installed (Debian: apt-get install postgresql)" >&2; exit 1; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
url="postgres://postgres@127.0.0.1:$port/minigate"

case "${1:-}" in
  start)
    if [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      echo "$url"; exit 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
      "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAtc "create database minigate" postgres >/dev/null
    echo "$url"
    ;;
  stop)
    [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  url)
    echo "$url"
    ;;
  *)
    echo "usage: scripts/postgres.sh start|stop|url" >&2
    exit 2
    ;;
esac
