#!/usr/bin/env bash
# Installs every Debian package pgwa needs to build, run, test and benchmark.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

packages=(
	build-essential pkg-config
	postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap pgtap
	libcurl4-openssl-dev libjansson-dev libmicrohttpd-dev libpq-dev
	curl jq procps
)
[ "${PGWA_BENCH_DEPS:-0}" = 1 ] && packages+=(wrk hyperfine)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "pgwa: missing packages: ${missing[*]}; run as root (or sudo make deps)" >&2
	exit 1
fi
echo "pgwa: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
