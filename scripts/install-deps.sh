#!/bin/sh
# Installs the Debian packages that building, running and testing tagarela need.
# Idempotent and quick when everything is already there: it only calls apt-get
# for the packages dpkg does not report as installed.
set -eu

BUILD="build-essential cmake pkg-config libuv1-dev libssl-dev libjansson-dev
libhttp-parser-dev libsqlite3-dev libhiredis-dev libpcap-dev zlib1g-dev libcmocka-dev"
TEST="python3 python3-websockets python3-pytest python3-pytest-xdist redis-server tcpdump tshark openssl
chromium gnuplot-nox haproxy mandoc"
FUZZ="clang libclang-rt-14-dev"
# `make deb`: the Debian package and its check.
DEB="dpkg-dev fakeroot lintian"

want="$BUILD"
case "${1:-}" in
  --test) want="$BUILD $TEST" ;;
  --fuzz) want="$BUILD $TEST $FUZZ" ;;
  --deb) want="$BUILD $DEB" ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done

# Node may come from elsewhere with its own npm: ask for Debian's only when absent.
if [ "${1:-}" = "--test" ] && ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi

if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
