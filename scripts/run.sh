#!/usr/bin/env bash
# make run: installs what is missing, builds and installs pgwa, starts a local
# PostgreSQL cluster in .pgwa/ (with pg_cron and pgwa preloaded) and pgwa-http,
# and prints how to call it. Safe to run again: it starts only what is down.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.pgwa"
pg_port=${PGWA_PG_PORT:-5488}
http_port=${PGWA_HTTP_PORT:-8080}
bindir=/usr/lib/postgresql/15/bin

bash scripts/install_deps.sh
make -s all
if [ "$(id -u)" = 0 ]; then make -s install >/dev/null; else sudo make -s install >/dev/null; fi

# PostgreSQL refuses to run as root: as root, the server runs as "postgres".
if [ "$(id -u)" = 0 ]; then
	owner=postgres
	as_owner() { runuser -u postgres -- "$@"; }
else
	owner=$(id -un)
	as_owner() { "$@"; }
fi

mkdir -p "$state"
chown "$owner" "$state"
chmod 700 "$state"
if ! as_owner test -w "$state"; then
	echo "pgwa: the $owner user cannot reach $state; make the checkout's parent folders traversable (chmod o+x) or clone it elsewhere" >&2
	exit 1
fi

if [ ! -f "$state/data/PG_VERSION" ]; then
	echo "pgwa: creating a cluster in .pgwa/data"
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/pg.password"
	chown "$owner" "$state/pg.password"
	chmod 600 "$state/pg.password"
	as_owner "$bindir/initdb" -D "$state/data" -U postgres --pwfile="$state/pg.password" \
		--auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
	cat >> "$state/data/postgresql.conf" <<CONF

# pgwa (written by make run)
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
shared_preload_libraries = 'pg_cron,pgwa'
cron.database_name = 'pgwa'
pgwa.database = 'pgwa'
CONF
fi

export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres PGDATABASE=pgwa
PGPASSWORD=$(cat "$state/pg.password")
export PGPASSWORD
cat > "$state/env" <<ENV
export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres PGDATABASE=pgwa PGPASSWORD=$PGPASSWORD
export PGWA_URL=http://127.0.0.1:$http_port
ENV
chmod 600 "$state/env"

if ! as_owner "$bindir/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
	echo "pgwa: starting PostgreSQL on 127.0.0.1:$pg_port"
	as_owner "$bindir/pg_ctl" -D "$state/data" -l "$state/postgres.log" -w start >/dev/null
fi
psql -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'pgwa'" | grep -q 1 ||
	psql -X -q -d postgres -c "CREATE DATABASE pgwa"
# Version 0.1 is not released, so it has no upgrade scripts: when the install
# script changed since this cluster got it, schema pgwa is made again.
script_sha=$(sha256sum sql/pgwa--0.1.sql | cut -d' ' -f1)
had_pgwa=$(psql -X -qtA -c "SELECT count(*) FROM pg_extension WHERE extname = 'pgwa'")
if [ "$had_pgwa" = 1 ] && [ "$(cat "$state/extension.sha" 2>/dev/null)" != "$script_sha" ]; then
	echo "pgwa: the extension's install script changed since this cluster got it (0.1 has no"
	echo "      upgrade scripts yet): recreating schema pgwa; its data and keys are reset"
	psql -X -q -c "SET client_min_messages = warning; DROP EXTENSION pgwa CASCADE;"
	rm -f "$state/admin.key"
fi
psql -X -q -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_cron; CREATE EXTENSION IF NOT EXISTS pgwa;"
echo "$script_sha" > "$state/extension.sha"

if [ ! -s "$state/admin.key" ]; then
	psql -X -qtA -c "SELECT pgwa.create_admin_key('make run')" > "$state/admin.key"
	chmod 600 "$state/admin.key"
fi

if [ -f "$state/pgwa-http.pid" ] && kill -0 "$(cat "$state/pgwa-http.pid")" 2>/dev/null; then
	echo "pgwa: pgwa-http already running (pid $(cat "$state/pgwa-http.pid"))"
else
	: > "$state/pgwa-http.log"
	chown "$owner" "$state/pgwa-http.log"
	mkdir -p "$state/uploads"
	chown "$owner" "$state/uploads"
	PGWA_HTTP_PORT=$http_port nohup runuser -u "$owner" -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		PGUSER="$PGUSER" PGDATABASE="$PGDATABASE" PGPASSWORD="$PGPASSWORD" PGWA_HTTP_PORT="$http_port" \
		PGWA_HTTP_UPLOAD_DIR="${PGWA_HTTP_UPLOAD_DIR:-$state/uploads}" \
		"$root/http_front/pgwa-http" >> "$state/pgwa-http.log" 2>&1 &
	echo $! > "$state/pgwa-http.pid"
	for _ in $(seq 50); do
		grep -q "listening on" "$state/pgwa-http.log" && break
		kill -0 "$(cat "$state/pgwa-http.pid")" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q "listening on" "$state/pgwa-http.log"; then
		echo "pgwa: pgwa-http did not start; see .pgwa/pgwa-http.log" >&2
		tail -5 "$state/pgwa-http.log" >&2
		exit 1
	fi
fi

# The dispatcher retries its database every few seconds until it exists.
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null || { echo "pgwa: /healthz is not ok; see .pgwa/postgres.log" >&2; exit 1; }
cat <<MSG

pgwa is running: PostgreSQL on 127.0.0.1:$pg_port (database pgwa), pgwa-http on http://127.0.0.1:$http_port
  . .pgwa/env; psql                      # SQL API (schema pgwa)
  admin key: .pgwa/admin.key             # logs: .pgwa/postgres.log, .pgwa/pgwa-http.log

Try it:
  ADMIN=\$(cat .pgwa/admin.key)
  KEY=\$(curl -s -X POST http://127.0.0.1:$http_port/v1/tenants -H "X-API-Key: \$ADMIN" -d '{"name":"acme"}' | jq -r .api_key)
  INST=\$(curl -s -X POST http://127.0.0.1:$http_port/v1/instances -H "X-API-Key: \$KEY" \\
         -d '{"name":"sales","provider":"broker","base_url":"http://127.0.0.1:9000","api_key":"broker-secret"}' | jq -r .id)
  curl -s -X POST http://127.0.0.1:$http_port/v1/instances/\$INST/messages -H "X-API-Key: \$KEY" \\
       -d '{"to":"+5511999999999","type":"text","text":"Olá!"}'

make stop stops both.
MSG
