#!/usr/bin/env bash
# Install the Debian packages that building, testing and the demo need,
# when any is missing.  Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron libcurl4-openssl-dev libjansson-dev
          postgresql-15-plpgsql-check
          pkg-config make gcc python3 util-linux openssl)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing missing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "run as root or install sudo: need ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
