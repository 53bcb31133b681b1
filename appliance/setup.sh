#!/usr/bin/env bash
# Install and start everything dbhaul and its tests need on Debian 12, idempotently: the
# ODBC driver manager and the PostgreSQL, MariaDB and SQLite drivers, the sqlite3 and
# compression tools, PostgreSQL and MariaDB servers when none is running, and moto's S3
# server (for the upload stage's tests). Safe to run again and again; it only does what is
# missing. Run as root (or with sudo available).
set -euo pipefail

log() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v cargo >/dev/null || { log "cargo is missing: install Rust 1.95 (rustup) first"; exit 2; }

# --- Debian packages ------------------------------------------------------------------
packages=(unixodbc unixodbc-dev odbc-postgresql odbc-mariadb libsqliteodbc sqlite3 pigz zstd bzip2 time
          postgresql-client mariadb-client python3-pip curl openssl
          chromium chromium-driver rpm)
port_open 5432 || packages+=(postgresql)
port_open 3306 || packages+=(mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- ODBC drivers registered ----------------------------------------------------------
here="$(cd "$(dirname "$0")" && pwd)"
for driver in "PostgreSQL Unicode" "MariaDB Unicode" "SQLite3"; do
  if ! odbcinst -q -d -n "$driver" >/dev/null 2>&1; then
    log "registering ODBC driver $driver"
    as_root odbcinst -i -d -f "$here/odbcinst.ini.example" >/dev/null
    break
  fi
done

# --- PostgreSQL: running, and reachable as postgres over TCP without a password ---------
if ! port_open 5432; then
  cluster=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $cluster"
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
fi
for _ in $(seq 1 30); do port_open 5432 && break; sleep 1; done
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  hba=$(as_root su postgres -c "psql -Atqc 'show hba_file'")
  log "allowing the test login postgres@127.0.0.1 without password in $hba"
  as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  as_root su postgres -c "psql -qc 'select pg_reload_conf()'" >/dev/null
fi

# --- MariaDB: running, and reachable as root over TCP with an empty password ------------
if ! port_open 3306; then
  log "starting MariaDB"
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
for _ in $(seq 1 30); do port_open 3306 && break; sleep 1; done
if ! mariadb -h 127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
  log "allowing the test login root@localhost with an empty password over TCP"
  as_root mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
fi

# --- moto's S3 server and the aws CLI (the upload stage's tests and benchmark) -----------
# 5.2.5 at least: 5.2.1 answers CompleteMultipartUpload with a root element the SDK rejects.
MOTO=5.2.5
if [ "$(python3 -m pip show moto 2>/dev/null | sed -n 's/^Version: //p')" != "$MOTO" ] \
   || ! command -v moto_server >/dev/null; then
  log "installing moto[server]==$MOTO from PyPI"
  python3 -m pip install -q "moto[server]==$MOTO" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "moto[server]==$MOTO"
fi
if ! command -v aws >/dev/null; then
  log "installing the aws CLI from PyPI"
  python3 -m pip install -q awscli 2>/dev/null \
    || python3 -m pip install -q --break-system-packages awscli
fi

# --- cargo-deb (the .deb of packaging/deb-rpm/build.sh; rpmbuild comes with `rpm`) ------
CARGO_DEB=3.8.0
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB" ]; then
  log "installing cargo-deb $CARGO_DEB (a few minutes, once)"
  cargo install -q --locked cargo-deb --version "$CARGO_DEB"
fi

# --- Prometheus' own parser (the /metrics tests check the text format with it) ---------
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
  log "installing prometheus-client from PyPI"
  python3 -m pip install -q prometheus-client 2>/dev/null \
    || python3 -m pip install -q --break-system-packages prometheus-client
fi

log "ready: ODBC drivers $(odbcinst -q -d | tr -d '[]' | paste -sd, -), PostgreSQL :5432, MariaDB :3306"
