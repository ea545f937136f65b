#!/usr/bin/env bash
# The team stack of docker/compose.yaml without a Docker engine: PostgreSQL (Debian's package), a Prefect
# server and an MLflow server on it, and a CPU worker (a GPU worker too where `nvidia-smi` finds a GPU).
# Each service runs the same command with the same environment keys as in compose.yaml
# (tests/system/test_stack.py compares them); only host names, ports and folders differ.
#
#   docker/stack.sh up        start what is not running (PostgreSQL initialised on first use)
#   docker/stack.sh down      stop everything (data stays in the state folder)
#   docker/stack.sh status    one line per service: running or not, healthy or not
#   docker/stack.sh env       the exports a client needs: eval "$(docker/stack.sh env)"
#   docker/stack.sh spec      SERVICE|COMMAND|ENVIRONMENT KEYS, per service (what the test compares)
#
# Both servers require credentials (MLflow's basic-auth app, Prefect's API auth string); `env` prints them for clients.
# Settings: docker/.env (created from .env.example with random secrets on first `up`); variables already
# set in the environment win, as with compose. TLOPS_STACK_DIR: state folder (default: .stack in the checkout);
# TLOPS_STACK_ENV: another settings file. TLOPS_STACK_BIND (in the settings file): the address Prefect and MLflow
# listen on, 127.0.0.1 unless set (PostgreSQL is always on 127.0.0.1).
# Each service gets only its own settings and secrets (service_env): no key of the settings file reaches a service
# under its own name, and no variable of the caller's environment named like a secret (*PASSWORD*, *SECRET*,
# *TOKEN*, *_API_KEY, *AUTH_STRING*, ...) reaches any; other extra environment (e.g. PREFECT_* settings) reaches every service.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
STATE=${TLOPS_STACK_DIR:-$ROOT/.stack}
ENV_FILE=${TLOPS_STACK_ENV:-$HERE/.env}
[ -x "$ROOT/.venv/bin/prefect" ] && PATH="$ROOT/.venv/bin:$PATH"
SERVICES=(postgres prefect-server mlflow worker-cpu worker-gpu)
declare -A FILE_KEY=()  # the keys of the settings file: shell variables here, never exported to a service
# tlops.secrets.is_secret_name's rule
SECRET_NAME='(^|_)(TOKEN|SECRET|SECRETS|PASSWD|CREDENTIALS?|AUTH_STRING)(_|$)|PASSWORD|(API|ACCESS|PRIVATE|SECRET|SIGNING|MASTER)_?KEY'

die() { echo "stack.sh: $*" >&2; exit 1; }

random_secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Random secrets: a fresh env file ($1 = fresh) gets them all; an older one only the keys it lacks (a password
# already in use, PostgreSQL's above all, is never changed here).
ensure_secrets() {
  local key value
  for key in POSTGRES_PASSWORD MLFLOW_ADMIN_PASSWORD MLFLOW_FLASK_SECRET_KEY PREFECT_AUTH_STRING; do
    value=$(random_secret)
    [ "$key" = PREFECT_AUTH_STRING ] && value="admin:$value"
    if [ "${1:-}" = fresh ]; then
      sed -i "s|^$key=.*|$key=$value|" "$ENV_FILE"
    elif ! grep -q "^$key=" "$ENV_FILE"; then
      echo "$key=$value" >> "$ENV_FILE"
      echo "stack.sh: added a random $key to $ENV_FILE" >&2
    fi
  done
}

load_settings() {
  if [ ! -f "$ENV_FILE" ]; then
    # first use: the example's settings with random secrets, readable by this user only
    (umask 077 && sed -e "s|^TLOPS_PROJECT_DIR=.*|TLOPS_PROJECT_DIR=$ROOT|" "$HERE/.env.example" > "$ENV_FILE")
    ensure_secrets fresh
    echo "stack.sh: wrote $ENV_FILE (random secrets)" >&2
  fi
  ensure_secrets
  local key value
  while IFS='=' read -r key value; do
    [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    FILE_KEY[$key]=1
    [ -n "${!key+x}" ] || printf -v "$key" '%s' "$value"  # a shell variable, not exported: services get service_env's
  done < "$ENV_FILE"
  : "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in $ENV_FILE}" "${POSTGRES_PORT:?}" "${PREFECT_PORT:?}" "${MLFLOW_PORT:?}"
  : "${MLFLOW_ADMIN_USER:=admin}" "${MLFLOW_ADMIN_PASSWORD:?}" "${MLFLOW_FLASK_SECRET_KEY:?}" "${PREFECT_AUTH_STRING:?}"
  # where the servers listen; clients, health checks and workers on this machine connect to STACK_HOST (loopback for 0.0.0.0)
  : "${TLOPS_STACK_BIND:=127.0.0.1}"
  FILE_KEY[TLOPS_STACK_BIND]=1
  case $TLOPS_STACK_BIND in 0.0.0.0 | :: | "") STACK_HOST=127.0.0.1 ;; *) STACK_HOST=$TLOPS_STACK_BIND ;; esac
}

is_secret_name() { [[ ${1^^} =~ $SECRET_NAME ]]; }

# `env` options that take from a service's environment what it must not inherit from this script's: every key of
# the settings file (service_env gives each service the few it needs, under the names it reads) and every variable
# named like a secret.
scrub_args() {
  local name
  while IFS= read -r name; do
    if [ -n "${FILE_KEY[$name]:-}" ] || is_secret_name "$name"; then printf '%s\n' -u "$name"; fi
  done < <(compgen -e)
}

# MLflow refuses Host headers it does not know (DNS-rebinding protection): the address clients here use is one
allowed_hosts() {
  case $STACK_HOST in 127.0.0.1 | localhost) echo "$MLFLOW_ALLOWED_HOSTS" ;; *) echo "$MLFLOW_ALLOWED_HOSTS,$STACK_HOST,$STACK_HOST:*" ;; esac
}

# The command of each service: word for word compose.yaml's `command:` (postgres: the image's own entrypoint).
service_command() {
  case $1 in
    postgres) echo "postgres" ;;
    prefect-server) echo "prefect server start" ;;
    mlflow) echo "mlflow server --app-name basic-auth" ;;
    worker-cpu) echo "prefect worker start --pool tlops-cpu --type process --with-healthcheck" ;;
    worker-gpu) echo "prefect worker start --pool tlops-gpu --type process --with-healthcheck" ;;
  esac
}

# The environment of each service: compose.yaml's keys, with this machine's hosts, ports and folders.
service_env() {
  case $1 in
    postgres)
      echo "POSTGRES_USER=$POSTGRES_USER"
      echo "POSTGRES_PASSWORD=$POSTGRES_PASSWORD" ;;
    prefect-server)
      echo "PREFECT_SERVER_API_HOST=$TLOPS_STACK_BIND"
      echo "PREFECT_SERVER_API_PORT=$PREFECT_PORT"
      echo "PREFECT_UI_API_URL=http://$STACK_HOST:$PREFECT_PORT/api"
      echo "PREFECT_SERVER_DATABASE_DRIVER=postgresql+asyncpg"
      echo "PREFECT_SERVER_DATABASE_HOST=127.0.0.1"
      echo "PREFECT_SERVER_DATABASE_PORT=$POSTGRES_PORT"
      echo "PREFECT_SERVER_DATABASE_USER=$POSTGRES_USER"
      echo "PREFECT_SERVER_DATABASE_PASSWORD=$POSTGRES_PASSWORD"
      echo "PREFECT_SERVER_DATABASE_NAME=prefect"
      echo "PREFECT_SERVER_ANALYTICS_ENABLED=false"
      echo "PREFECT_SERVER_API_AUTH_STRING=$PREFECT_AUTH_STRING" ;;
    mlflow)
      echo "MLFLOW_HOST=$TLOPS_STACK_BIND"
      echo "MLFLOW_PORT=$MLFLOW_PORT"
      echo "MLFLOW_WORKERS=2"
      echo "MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://$POSTGRES_USER@127.0.0.1:$POSTGRES_PORT/mlflow"
      echo "PGPASSWORD=$POSTGRES_PASSWORD"
      echo "MLFLOW_SERVE_ARTIFACTS=true"
      echo "MLFLOW_ARTIFACTS_DESTINATION=$STATE/mlartifacts"
      echo "MLFLOW_SERVER_ALLOWED_HOSTS=$(allowed_hosts)"
      echo "MLFLOW_AUTH_CONFIG_PATH=$STATE/mlflow-auth.ini"
      echo "MLFLOW_AUTH_ADMIN_USERNAME=$MLFLOW_ADMIN_USER"
      echo "MLFLOW_AUTH_ADMIN_PASSWORD=$MLFLOW_ADMIN_PASSWORD"
      echo "MLFLOW_FLASK_SERVER_SECRET_KEY=$MLFLOW_FLASK_SECRET_KEY" ;;
    worker-cpu | worker-gpu)
      echo "PREFECT_API_URL=http://$STACK_HOST:$PREFECT_PORT/api"
      echo "MLFLOW_TRACKING_URI=http://$STACK_HOST:$MLFLOW_PORT"
      echo "MLFLOW_TRACKING_USERNAME=$MLFLOW_ADMIN_USER"
      echo "MLFLOW_TRACKING_PASSWORD=$MLFLOW_ADMIN_PASSWORD"
      echo "PREFECT_API_AUTH_STRING=$PREFECT_AUTH_STRING"
      echo "PREFECT_WORKER_WEBSERVER_PORT=$(worker_health_port "$1")"
      echo "PREFECT_WORKER_WEBSERVER_HOST=127.0.0.1"
      echo "HF_HUB_OFFLINE=1" ;;
  esac
}

# Both workers share this host natively, so each gets its own health port (8080 in its container under compose).
worker_health_port() { [ "$1" = worker-cpu ] && echo "${WORKER_CPU_HEALTH_PORT:-8081}" || echo "${WORKER_GPU_HEALTH_PORT:-8082}"; }

health_url() {
  case $1 in
    prefect-server) echo "http://$STACK_HOST:$PREFECT_PORT/api/health" ;;
    mlflow) echo "http://$STACK_HOST:$MLFLOW_PORT/health" ;;
    worker-*) echo "http://127.0.0.1:$(worker_health_port "$1")/health" ;;
  esac
}

healthy() {
  if [ "$1" = postgres ]; then
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -d prefect -U "$POSTGRES_USER"
  else
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "$(health_url "$1")" 2>/dev/null
  fi
}

pid_file() { echo "$STATE/pids/$1.pid"; }

running() {
  if [ "$1" = postgres ]; then
    [ -f "$STATE/pgdata/postmaster.pid" ] && kill -0 "$(head -1 "$STATE/pgdata/postmaster.pid")" 2>/dev/null
  else
    [ -f "$(pid_file "$1")" ] && kill -0 "$(cat "$(pid_file "$1")")" 2>/dev/null
  fi
}

wanted() {
  # the GPU worker only where there is a GPU (or TLOPS_STACK_GPU=1 says so)
  [ "$1" != worker-gpu ] || [ "${TLOPS_STACK_GPU:-}" = 1 ] || nvidia-smi -L >/dev/null 2>&1
}

wait_healthy() {
  local service=$1 timeout=$2 start=$SECONDS
  until healthy "$service"; do
    if [ "$service" != postgres ] && ! running "$service"; then
      die "$service exited; its log ($STATE/logs/$service.log) ends with:
$(tail -n 30 "$STATE/logs/$service.log")"
    fi
    [ $((SECONDS - start)) -lt "$timeout" ] || die "$service not healthy after ${timeout}s; see $STATE/logs/$service.log"
    sleep 1
  done
}

# PostgreSQL refuses to run as root: as root, its commands run as Debian's `postgres` user.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  local data=$STATE/pgdata fresh=""
  mkdir -p "$STATE/run"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$STATE/run"
    runuser -u postgres -- test -x "$STATE" || die "the postgres user cannot reach $STATE; set TLOPS_STACK_DIR to a folder it can traverse"
  fi
  if [ ! -s "$data/PG_VERSION" ]; then
    fresh=1
    mkdir -p "$data" && chmod 700 "$data"
    local pwfile=$STATE/run/pw
    (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile")
    if [ "$(id -u)" = 0 ]; then chown postgres "$data" "$pwfile"; fi
    as_postgres "$PG_BIN/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 \
      --locale=C.UTF-8 >"$STATE/logs/postgres-initdb.log" 2>&1 || { rm -f "$pwfile"; die "initdb failed: $(tail -5 "$STATE/logs/postgres-initdb.log")"; }
    rm -f "$pwfile"
  fi
  touch "$STATE/logs/postgres.log"
  if [ "$(id -u)" = 0 ]; then chown postgres "$STATE/logs/postgres.log"; fi
  local scrub=()
  mapfile -t scrub < <(scrub_args)
  as_postgres env "${scrub[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$STATE/logs/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -k $STATE/run" start >/dev/null \
    || die "PostgreSQL did not start: $(tail -5 "$STATE/logs/postgres.log")"
  if [ -n "$fresh" ]; then
    # the same init script the postgres image runs on a fresh volume
    PGPASSWORD=$POSTGRES_PASSWORD "$PG_BIN/psql" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$POSTGRES_USER" -d postgres \
      -v ON_ERROR_STOP=1 -f "$HERE/postgres/init.sql" >/dev/null
  fi
}

# compose.yaml's basic_auth.ini, with the users' database in the state folder
write_auth_config() {
  mkdir -p "$STATE/mlauth"
  sed "s|^database_uri = .*|database_uri = sqlite:///$STATE/mlauth/basic_auth.db|" "$HERE/mlflow/basic_auth.ini" > "$STATE/mlflow-auth.ini"
}

start_service() {
  local service=$1 vars=() scrub=()
  mapfile -t vars < <(service_env "$service")
  mapfile -t scrub < <(scrub_args)
  # own session: `down` stops the service and all its children as one process group
  # shellcheck disable=SC2046
  setsid env "${scrub[@]}" "${vars[@]}" $(service_command "$service") >"$STATE/logs/$service.log" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$service")"
}

up() {
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/mlartifacts"
  for service in "${SERVICES[@]}"; do
    wanted "$service" || continue
    if running "$service"; then
      echo "$service: already running"
      continue
    fi
    [ "$service" = mlflow ] && write_auth_config
    if [ "$service" = postgres ]; then start_postgres; else start_service "$service"; fi
    case $service in postgres) wait_healthy "$service" 60 ;; mlflow) wait_healthy "$service" 240 ;; *) wait_healthy "$service" 180 ;; esac
    echo "$service: up"
  done
  env_exports
}

down() {
  # every service but PostgreSQL is asked to stop at once (the wait is the slowest one's, not the sum: a server busy
  # with a request can take its 20 s), the worker first; PostgreSQL goes last, once nothing uses it
  local i service pid stopping=()
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    service=${SERVICES[$i]}
    [ "$service" = postgres ] && continue
    running "$service" || continue
    pid=$(cat "$(pid_file "$service")")
    kill -TERM -- "-$pid" 2>/dev/null || true
    stopping+=("$service:$pid")
  done
  for entry in "${stopping[@]}"; do
    service=${entry%%:*} pid=${entry#*:}
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$(pid_file "$service")"
    echo "$service: stopped"
  done
  if running postgres; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pgdata" -m fast -w stop >/dev/null
    echo "postgres: stopped"
  fi
}

status() {
  local service state health bad=0
  for service in "${SERVICES[@]}"; do
    wanted "$service" || { echo "$service: not used here (no GPU)"; continue; }
    if running "$service"; then state=running; else state=stopped; bad=1; fi
    if healthy "$service"; then health=healthy; else health=unhealthy; bad=1; fi
    echo "$service: $state, $health"
  done
  return $bad
}

env_exports() {
  echo "export PREFECT_API_URL=http://$STACK_HOST:$PREFECT_PORT/api"
  echo "export MLFLOW_TRACKING_URI=http://$STACK_HOST:$MLFLOW_PORT"
  # the credentials travel in the environment (MLflow sends basic auth, Prefect its auth string), never in a URI
  echo "export MLFLOW_TRACKING_USERNAME=$MLFLOW_ADMIN_USER"
  echo "export MLFLOW_TRACKING_PASSWORD=$MLFLOW_ADMIN_PASSWORD"
  echo "export PREFECT_API_AUTH_STRING=$PREFECT_AUTH_STRING"
}

spec() {
  local service keys
  for service in "${SERVICES[@]}"; do
    keys=$(service_env "$service" | cut -d= -f1 | sort | tr '\n' ' ')
    echo "$service|$(service_command "$service")|${keys% }"
  done
}

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
case ${1:-} in
  up) [ -n "$PG_BIN" ] || die "PostgreSQL is not installed (Debian: apt-get install postgresql)"; load_settings; up ;;
  down) load_settings; down ;;
  status) load_settings; status ;;
  env) load_settings; env_exports ;;
  spec) load_settings; spec ;;
  *) echo "usage: docker/stack.sh up|down|status|env|spec" >&2; exit 2 ;;
esac
