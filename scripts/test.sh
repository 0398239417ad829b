#!/usr/bin/env bash
# make test: installs what is missing, builds, and runs the whole suite against a throwaway cluster (pg_virtualenv). The suite ends
# with one line "N passed, N failed"; the exit status is non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
make -s all >/dev/null

# Install into a private folder, not the system: concurrent runs from other
# checkouts never load each other's builds, and no root is needed. Debian's
# PostgreSQL finds it through extension_destdir and dynamic_library_path.
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
chmod 755 "$dest"
make -s install DESTDIR="$dest" >/dev/null

# -t: a private temporary cluster, so parallel runs never collide.
pg_virtualenv -t -v 15 \
	-o extension_destdir="$dest" \
	-o "dynamic_library_path=$dest$(pg_config --pkglibdir):\$libdir" \
	-o shared_preload_libraries=pg_cron,pgwa \
	-o cron.database_name=pgwa \
	-o pgwa.database=pgwa \
	-o max_connections=200 \
	bash test/run_suite.sh "$@"
