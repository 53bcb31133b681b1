#!/bin/sh
# Installed as PREFIX/lib/dbhaul/relocate.sh; the RPM's %post runs it with the prefix the
# package was installed under (`rpm --prefix DIR`): the service units name their paths,
# so they are rewritten from /opt/dbhaul to it.
set -e
prefix="${1:?usage: relocate.sh PREFIX}"
[ "$prefix" = /opt/dbhaul ] && exit 0
for unit in "$prefix"/lib/systemd/system/dbhaul-*.service; do
  sed -i "s#/opt/dbhaul#$prefix#g" "$unit"
done
