#!/bin/sh
# build-deb.sh OUTDIR -- builds the Debian package from a copy of this tree
# in OUTDIR/src (dpkg-buildpackage writes next to the source, so the copy
# keeps the .deb out of the checkout's parent), then runs lintian on it.
set -eu
out=${1:?usage: build-deb.sh OUTDIR}
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/src" "$out"/tagarela_*
mkdir "$out/src"
# the tree without builds, VCS data or node modules
(cd "$top" && tar -cf - --exclude=./.git --exclude='./build*' --exclude=node_modules \
    --exclude=./obj-deb .) | (cd "$out/src" && tar -xf -)
root=""
[ "$(id -u)" -eq 0 ] || root="-rfakeroot"
(cd "$out/src" && dpkg-buildpackage -b --no-sign $root >"$out/build.log" 2>&1) || {
    tail -30 "$out/build.log"
    echo "build-deb.sh: dpkg-buildpackage failed; the whole log is in $out/build.log" >&2
    exit 1
}
deb=$(ls "$out"/tagarela_*.deb)
echo "built $deb"
if command -v lintian >/dev/null 2>&1; then
    # tags left are explained in docs/operating.md
    lintian --tag-display-limit 0 "$deb" || true
fi
