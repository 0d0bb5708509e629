#!/usr/bin/env bash
# A team's MLflow tracking server on PostgreSQL: creates the database and its role when missing,
# then runs `mlflow server` in the foreground (stop it with Ctrl-C or SIGTERM).
# Usage: deploy/mlflow-postgres.sh [--host ADDR] [--port N] [--artifacts DIR|URI] [--workers N] [-- MLFLOW_SERVER_OPTIONS...]
#   defaults: 127.0.0.1:5000 (loopback only: say --host 0.0.0.0 to serve the team, and add
#   `-- --allowed-hosts 'mlflow.example.org,mlflow.example.org:5000'` when clients use a name MLflow
#   does not allow by default: the Host header is matched with its port, and the list replaces MLflow's),
#   artifacts in ./mlflow-artifacts, 2 workers.
# PostgreSQL: the server named by the usual libpq variables PGHOST (default localhost), PGPORT
#   (5432); PGUSER/PGPASSWORD: a role that may create roles and databases, used only when they are
#   missing. MLFLOW_DB (default mlflow) and MLFLOW_DB_USER (mlflow) name what is created;
#   MLFLOW_DB_PASSWORD is the role's password (default: generated once and kept, mode 600, in
#   MLFLOW_DB_PASSWORD_FILE, default ~/.config/losstune/mlflow-db-password).
# Needs psql (Debian package postgresql-client) and psycopg2 (pip install 'losstune[cluster]').
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
host=127.0.0.1
port=5000
artifacts=mlflow-artifacts
workers=2
die() { echo "deploy/mlflow-postgres.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="${2-}"; shift 2 || shift ;;
    --port) port="${2-}"; shift 2 || shift ;;
    --artifacts) artifacts="${2-}"; shift 2 || shift ;;
    --workers) workers="${2-}"; shift 2 || shift ;;
    --) shift; break ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) die "unknown option '$1' (allowed: --host, --port, --artifacts, --workers, -- MLFLOW_SERVER_OPTIONS)" ;;
  esac
done
[[ "$port" =~ ^[0-9]+$ ]] && (( port >= 1 && port <= 65535 )) || die "port must be an integer in 1..65535, but got '$port'"
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "workers must be a positive integer, but got '$workers'"
[[ -n "$host" && -n "$artifacts" ]] || die "--host and --artifacts must not be empty"
command -v psql >/dev/null || die "psql not found: apt-get install postgresql-client (or make postgres)"
mlflow_bin="${MLFLOW_BIN:-$here/../.venv/bin/mlflow}"
[[ -x "$mlflow_bin" ]] || mlflow_bin="$(command -v mlflow)" || die "no mlflow found; run 'make setup' first"

db="${MLFLOW_DB:-mlflow}"
db_user="${MLFLOW_DB_USER:-mlflow}"
db_host="${PGHOST:-localhost}"
db_port="${PGPORT:-5432}"
password="${MLFLOW_DB_PASSWORD:-}"
if [[ -z "$password" ]]; then
  password_file="${MLFLOW_DB_PASSWORD_FILE:-$HOME/.config/losstune/mlflow-db-password}"
  if [[ ! -s "$password_file" ]]; then
    mkdir -p "$(dirname "$password_file")"
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$password_file")
  fi
  password="$(cat "$password_file")"
fi

# Role and database, each created only when missing (psql variables quote them: %I and %L).
# A role that already exists keeps its password: change it with ALTER ROLE, not here. The
# password reaches psql on its standard input, not its command line, which `ps` shows (in
# psql's single quotes a quote is doubled and a backslash escapes).
quoted="${password//\\/\\\\}"
quoted="${quoted//\'/\'\'}"
psql -X -q -v ON_ERROR_STOP=1 -h "$db_host" -p "$db_port" -d postgres \
  -v role="$db_user" -v db="$db" <<SQL
\set password '$quoted'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
# From here on only the MLflow role; its password travels in the environment (PGPASSWORD, read
# by libpq), not in the URI, so `ps` does not show it.
unset PGUSER PGSERVICE
export PGPASSWORD="$password"
psql -X -q -h "$db_host" -p "$db_port" -U "$db_user" -d "$db" -c 'SELECT 1' >/dev/null ||
  die "cannot log in to $db on $db_host:$db_port as $db_user: if the role existed before, set MLFLOW_DB_PASSWORD to its password"

case "$db_host" in  # a directory is libpq's Unix socket directory
  /*) backend="postgresql+psycopg2://$db_user@/$db?host=$db_host&port=$db_port" ;;
  *) backend="postgresql+psycopg2://$db_user@$db_host:$db_port/$db" ;;
esac
case "$artifacts" in *://*) ;; *) mkdir -p "$artifacts"; artifacts="$(cd "$artifacts" && pwd)" ;; esac
echo "MLflow: http://$host:$port  (runs in $backend, artifacts in $artifacts)"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export MLFLOW_DISABLE_TELEMETRY=true
exec "$mlflow_bin" server \
  --backend-store-uri "$backend" \
  --artifacts-destination "$artifacts" \
  --host "$host" --port "$port" --workers "$workers" "$@"
