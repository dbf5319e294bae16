#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds the oncebridge Debian package from this source tree (its working
# tree: tracked files and new files git does not ignore) into OUTDIR, then
# runs lintian on it. Meant for Debian 12, as root: it installs the build
# dependencies and lintian when they are missing.
#
# usage: packaging/build-deb.sh OUTDIR
#   ONCEBRIDGE_LINTIAN=no   skip lintian
#
# The package is native (3.0 (native), version 0.1.0): it is built from a
# checkout, without an upstream tarball. lintian exits non-zero on errors,
# and so does this script. It reports no errors and no warnings on Debian
# 12 (lintian 2.116); "lintian -I" adds one informational tag that stays:
#   I: package-supports-alternative-init-but-no-init.d-script: the unit
#      needs systemd (Type=notify, watchdog, sandboxing); no sysvinit script.
# It also says "running with root privileges is not recommended!", which
# is harmless here.
set -eu

out=${1:?usage: build-deb.sh OUTDIR}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version 2>/dev/null || echo 0.1.0)

work=$(mktemp -d "${TMPDIR:-/tmp}/oncebridge-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
tree="$work/oncebridge-$version"
mkdir "$tree"

# the sources, without build products
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$src" ls-files -z --cached --others --exclude-standard |
		(cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
		(cd "$src" && tar --null --no-recursion -T - -cf -) | tar -xf - -C "$tree"
else
	(cd "$src" && tar --exclude=./build --exclude=./autom4te.cache -cf - .) | tar -xf - -C "$tree"
fi
rm -rf "$tree/debian"
cp -a "$src/packaging/debian" "$tree/debian"

need="debhelper dpkg-dev lintian"
export DEBIAN_FRONTEND=noninteractive
missing=""
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] || ! (cd "$tree" && dpkg-checkbuilddeps >/dev/null 2>&1); then
	if [ "$(id -u)" != 0 ]; then
		echo "build-deb: build dependencies are missing; run as root to install them" >&2
		(cd "$tree" && dpkg-checkbuilddeps) || true
		exit 1
	fi
	echo "build-deb: installing build dependencies"
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
	apt-get build-dep -y -qq "$tree" >/dev/null
fi

echo "build-deb: building oncebridge $version in $tree"
(cd "$tree" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -us -uc >"$work/build.log" 2>&1) || {
	tail -40 "$work/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed" >&2
	exit 1
}
for f in "$work"/oncebridge_"$version"* "$work"/oncebridge-dbgsym_"$version"*; do
	cp "$f" "$out/"
done
cp "$work/build.log" "$out/oncebridge_$version.build.log"
ls "$out"/oncebridge_"$version"_*.deb

if [ "${ONCEBRIDGE_LINTIAN:-yes}" != no ]; then
	echo "build-deb: lintian"
	lintian --info "$out/oncebridge_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).changes"
fi
