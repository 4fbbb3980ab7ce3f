#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server on 127.0.0.1 and RETAIN_TEST_POSTGRES_URL
# pointing at an empty database in it; the server and its files are removed afterwards.
#   scripts/with-postgres.sh .venv/bin/python -m pytest
# Uses an existing RETAIN_TEST_POSTGRES_URL as is. Installs Debian's postgresql package when
# no server is found and it runs as root. With RETAIN_REQUIRE_POSTGRES=1 (CI) a missing server
# is an error; otherwise the PostgreSQL tests are skipped with a notice.
set -euo pipefail

if [ -n "${RETAIN_TEST_POSTGRES_URL:-}" ]; then exec "$@"; fi

find_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bindir=$(find_bindir)
if [ -z "$bindir" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "with-postgres: installing PostgreSQL (Debian package postgresql)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bindir=$(find_bindir)
fi
if [ -z "$bindir" ]; then
  if [ "${RETAIN_REQUIRE_POSTGRES:-0}" = 1 ]; then
    echo "with-postgres: no PostgreSQL server found and it cannot be installed here" >&2
    exit 1
  fi
  echo "with-postgres: no PostgreSQL server found; PostgreSQL tests will be skipped" >&2
  exec "$@"
fi

datadir=$(mktemp -d /tmp/retain-pg.XXXXXX)
as_owner=()
if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
  chown postgres "$datadir"
  as_owner=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$datadir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$datadir"
}
trap stop EXIT

"${as_owner[@]}" "$bindir/initdb" -D "$datadir/data" -U postgres --auth=trust -E UTF8 >/dev/null
# fsync off: a test server's data is thrown away anyway.
"${as_owner[@]}" "$bindir/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -t 60 \
  -o "-p $port -k $datadir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
  start >/dev/null
"$bindir/psql" -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE retain_test" >/dev/null
export RETAIN_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/retain_test"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
