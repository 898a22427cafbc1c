#!/bin/sh
# install-deps.sh -- install the Debian packages errrelay builds and tests
# with.  Does nothing when they are all present; needs root otherwise.
set -eu

PKGS="build-essential autoconf automake pkg-config
libevent-dev libcurl4-openssl-dev libcjson-dev libsqlite3-dev libinih-dev
check uthash-dev zlib1g-dev libsystemd-dev python3 socat libtool
ruby ruby-async ruby-rack openssl"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
