# Start a throw-away PostgreSQL on loopback for the tests; sourced by .ci/run (and usable by hand).
# Exports ANYNET_TEST_POSTGRES_URL. As root the server runs as the postgres user.

start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  local bin port run_as
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  # a free loopback port, so a server already running here (another checkout, a developer's) never collides
  port=${ANYNET_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  PGDATA_DIR=$(mktemp -d /tmp/anynet-pg.XXXXXX)
  run_as=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PGDATA_DIR"
    run_as=(runuser -u postgres --)
  fi
  PG_RUN_AS=("${run_as[@]}")
  PG_BIN=$bin
  "${run_as[@]}" "$bin/initdb" -D "$PGDATA_DIR/data" -A trust -U postgres >/dev/null
  "${run_as[@]}" "$bin/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PGDATA_DIR -c max_connections=200" start >/dev/null
  "${run_as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres anynet_test
  export ANYNET_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/anynet_test"
  echo "PostgreSQL running on 127.0.0.1:$port"
}

stop_postgres() {
  if [ -n "${PGDATA_DIR:-}" ]; then
    "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA_DIR"
  fi
}
