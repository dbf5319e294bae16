#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs, from Debian 12's own archive, everything needed to build
# oncebridge and run its tests and demo. Does nothing when all is there.
set -eu
packages="build-essential autoconf automake pkg-config
libpaho-mqtt-dev librabbitmq-dev libpq-dev libconfig-dev libjson-c-dev libssl-dev openssl
libsystemd-dev libmicrohttpd-dev libcbor-dev libmsgpack-dev
libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
postgresql postgresql-client rabbitmq-server mosquitto
python3 python3-pika python3-paho-mqtt python3-psycopg2 python3-cbor2 python3-msgpack python3-protobuf procps iproute2
prometheus"
missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing; run this script as root" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# keep the packaged services from starting system-wide daemons where we can
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing > /tmp/oncebridge-apt.log 2>&1 || {
	tail -30 /tmp/oncebridge-apt.log >&2
	exit 1
}
