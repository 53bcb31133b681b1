#!/usr/bin/env bash
# Build target/packages/dbhaul_<version>_amd64.deb (cargo-deb) and
# target/packages/dbhaul-<version>-1.x86_64.rpm (rpmbuild, relocatable) from one staged
# tree under target/packages/stage/opt/dbhaul:
#   bin/      dbhaul, dbhaul-configure, dbhaul-agent-start|stop|status
#   etc/      odbcinst.ini.example, examples/*.toml
#   lib/      systemd/system/dbhaul-{agent,controller}.service, dbhaul/relocate.sh (RPM)
#   share/    doc/README.md
#   var/ log/ the state and log folders (the service user's, 0700)
#
#   bash packaging/deb-rpm/build.sh               release build, then both packages
#   bash packaging/deb-rpm/build.sh --profile dev --no-build   package the test build
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: build.sh [--profile release|dev] [--no-build]" >&2; exit 2 ;;
  esac
done
for tool in cargo-deb rpmbuild; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing; bash appliance/setup.sh installs it" >&2; exit 2; }
done
[ "$build" = 1 ] && cargo build --locked --profile "$profile"
bindir="target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
[ -x "$bindir/dbhaul" ] || { echo "build.sh: $bindir/dbhaul is missing; build it first" >&2; exit 2; }
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
here=packaging/deb-rpm
out=target/packages
root="$out/stage/opt/dbhaul"

rm -rf "$out/stage" "$out/rpmbuild"
mkdir -p "$root"/{bin,etc/examples,lib/systemd/system,lib/dbhaul,share/doc,var/agent,var/controller,log}
install -m 755 "$bindir/dbhaul" "$root/bin/dbhaul"
# Line tables of every crate make the binary five times larger; the symbols stay, so a
# backtrace still names its functions.
strip --strip-debug "$root/bin/dbhaul"
install -m 755 appliance/configure.sh "$root/bin/dbhaul-configure"
for action in start stop status; do
  install -m 755 appliance/agent-service.sh "$root/bin/dbhaul-agent-$action"
done
install -m 644 appliance/odbcinst.ini.example "$root/etc/"
install -m 644 appliance/examples/*.toml "$root/etc/examples/"
install -m 644 README.md "$root/share/doc/README.md"
install -m 755 "$here/relocate.sh" "$root/lib/dbhaul/relocate.sh"
for unit in dbhaul-agent dbhaul-controller; do
  sed 's#@PREFIX@#/opt/dbhaul#g' "$here/systemd/$unit.service" > "$root/lib/systemd/system/$unit.service"
done

# A package of the test build is for the suite: compressed fast, not small.
fast=()
payload=w9.xzdio
if [ "$profile" = dev ]; then
  fast=(--fast)
  payload=w1.gzdio
fi

# cargo-deb: the assets and units listed in Cargo.toml, from the staged tree (which is why
# it needs no profile: it builds nothing and picks no binary of its own).
cargo deb --no-build --no-strip "${fast[@]}" --output "$out/dbhaul_${version}_amd64.deb" >/dev/null

# rpmbuild: the same tree, under a prefix that `rpm --prefix` can move.
rpmbuild -bb "$here/dbhaul.spec" \
  --define "_topdir $PWD/$out/rpmbuild" \
  --define "version $version" \
  --define "stage $PWD/$out/stage" \
  --define "_build_id_links none" \
  --define "__strip /bin/true" \
  --define "_binary_payload $payload" \
  --quiet >/dev/null
cp "$out/rpmbuild/RPMS/x86_64/dbhaul-${version}-1.x86_64.rpm" "$out/"
ls -l "$out"/*.deb "$out"/*.rpm | awk '{print $5, $NF}'
