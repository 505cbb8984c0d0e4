#!/usr/bin/env bash
# Make sure a PostgreSQL server with PostGIS is reachable for Ly.
#
# - With DATABASE_URL set, Ly uses that server as it is and this script does nothing:
#   the role in it needs CREATEDB (the test suite makes one database per test) and the
#   server needs the PostGIS package installed.
# - Otherwise Ly uses a local PostgreSQL on 127.0.0.1:5432. This script installs PostgreSQL
#   and PostGIS from the distribution's packages when they are missing and it runs as root,
#   starts the cluster when it is down, and creates the role `ly` (password `ly`) and the
#   databases `ly` and `ly_test`. Not root and something missing: it stops and says what to run.
set -euo pipefail

if [ -n "${DATABASE_URL:-}" ]; then
  echo "provision: DATABASE_URL is set; using that server as it is."
  exit 0
fi

PGHOST_ADDR=127.0.0.1
PGPORT_NUM=${PGPORT:-5432}
am_root() { [ "$(id -u)" = 0 ]; }
die() { echo "provision: $*" >&2; exit 1; }

apt_install() {
  am_root || die "missing packages: $*. Install them with: sudo apt-get install -y $*   (or set DATABASE_URL to a PostgreSQL server with PostGIS)"
  command -v apt-get >/dev/null || die "no apt-get here; install $* by hand, or set DATABASE_URL"
  echo "provision: installing $* ..."
  if [ ! -f /var/lib/apt/periodic/ly-updated ] || [ -z "$(ls /var/lib/apt/lists 2>/dev/null | grep -v lock | head -1)" ]; then
    apt-get update -qq
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/ly-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }

# 1. PostgreSQL itself
if [ -z "$(pg_version)" ]; then
  apt_install postgresql postgresql-contrib
fi
PGV=$(pg_version)
[ -n "$PGV" ] || die "PostgreSQL did not install"

# 2. PostGIS for that major version
if [ ! -f "/usr/share/postgresql/$PGV/extension/postgis.control" ]; then
  apt_install "postgresql-$PGV-postgis-3"
fi

# 3. A running cluster
if ! pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM"; then
  am_root || die "PostgreSQL is not running on $PGHOST_ADDR:$PGPORT_NUM; start it with: sudo pg_ctlcluster $PGV main start"
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
    pg_createcluster "$PGV" main >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$PGV" main start 2>/dev/null || pg_ctlcluster "$PGV" main start
  for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" && break; sleep 1; done
  pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" || die "PostgreSQL did not start"
fi

# 4. Role and databases, as the postgres superuser (trust over TCP, else peer as root)
as_postgres() {
  if psql -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    psql -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  elif am_root; then
    runuser -u postgres -- psql -p "$PGPORT_NUM" -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  else
    die "cannot connect as the postgres superuser; create a role with CREATEDB and the PostGIS extension available, and set DATABASE_URL"
  fi
}
# `ly` is a superuser on this local development server so that it can create PostGIS in the
# per-test databases; production deployments use their own DATABASE_URL.
as_postgres -c "DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ly') THEN
    CREATE ROLE ly LOGIN SUPERUSER PASSWORD 'ly';
  END IF; END\$\$;"
for db in ly ly_test; do
  if [ -z "$(as_postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    as_postgres -c "CREATE DATABASE $db OWNER ly"
  fi
done
echo "provision: PostgreSQL $PGV with PostGIS ready on $PGHOST_ADDR:$PGPORT_NUM (databases ly, ly_test)"
