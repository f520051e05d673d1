#!/usr/bin/env bash
# Start a throwaway PostgreSQL on loopback for the test suite, installing it from Debian's packages if needed.
# Prints the SQLAlchemy URL on its last line.
set -euo pipefail
PGPORT=${KB_TEST_PGPORT:-54329}
PGDIR=${KB_TEST_PGDIR:-/tmp/kb-test-postgres}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

run_as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" 2>/dev/null; then
  if [ ! -f "$PGDIR/PG_VERSION" ]; then
    rm -rf "$PGDIR"
    mkdir -p "$PGDIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
    run_as_postgres "$bindir/initdb" -D "$PGDIR" -A trust -U postgres >/dev/null
  fi
  run_as_postgres "$bindir/pg_ctl" -D "$PGDIR" -l "$PGDIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDIR -c fsync=off" start >&2
fi
"$bindir/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='kb_test'" \
  | grep -q 1 || "$bindir/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres kb_test
echo "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/kb_test"
