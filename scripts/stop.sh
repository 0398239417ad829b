#!/usr/bin/env bash
# make stop: stops what make run started (pgwa-http, then PostgreSQL).
set -uo pipefail
cd "$(dirname "$0")/.."
state="$(pwd)/.pgwa"
bindir=/usr/lib/postgresql/15/bin

if [ -f "$state/pgwa-http.pid" ]; then
	pid=$(cat "$state/pgwa-http.pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		echo "pgwa: pgwa-http stopped"
	fi
	rm -f "$state/pgwa-http.pid"
fi
if [ -f "$state/data/PG_VERSION" ]; then
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$bindir/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null 2>&1 && echo "pgwa: PostgreSQL stopped"
	else
		"$bindir/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null 2>&1 && echo "pgwa: PostgreSQL stopped"
	fi
fi
exit 0
