#!/usr/bin/env bash
# make test: installs what is missing, builds, installs the extension and runs
# the whole suite against a throwaway cluster (pg_virtualenv). The suite ends
# with one line "N passed, N failed"; the exit status is non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
make -s all >/dev/null
if [ "$(id -u)" = 0 ]; then
	make -s install >/dev/null
else
	sudo make -s install >/dev/null
fi

# -t: a private temporary cluster, so parallel runs never collide.
exec pg_virtualenv -t -v 15 \
	-o shared_preload_libraries=pg_cron,pgwa \
	-o cron.database_name=pgwa \
	-o pgwa.database=pgwa \
	-o max_connections=200 \
	bash test/run_suite.sh "$@"
