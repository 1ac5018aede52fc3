#!/usr/bin/env bash
# Throw-away MariaDB (MySQL wire protocol) for the `town`-marked SQL tests in tests/sql.
#
#   bash .ci/mysql.sh start   # install mariadb-server if missing (root only), start a private server
#   bash .ci/mysql.sh env     # print the connection facts (shell `export` lines)
#   bash .ci/mysql.sh stop    # stop that server and delete its data directory
#
# The server runs from a fresh `mktemp -d` directory, listens on 127.0.0.1 only, and never touches
# /var/lib/mysql or a town's Dolt server.  --no-defaults keeps /etc/mysql/*.cnf out of it; without
# those files MariaDB's built-in default charset is latin1, hence the explicit utf8mb4 flags.
# Facts go to the state file ${GT_FINETUNE_TEST_MYSQL_STATE:-/tmp/gt-finetune-test-mysql.env};
# tests/sql/conftest.py reads it (or the GT_FINETUNE_TEST_MYSQL_* variables themselves).
# start and stop are idempotent.
set -euo pipefail

STATE=${GT_FINETUNE_TEST_MYSQL_STATE:-/tmp/gt-finetune-test-mysql.env}
HOST=127.0.0.1
MARKER=.gt-finetune-test-mysql   # written into every directory this script creates; stop checks it

log() { echo "mysql.sh: $*" >&2; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# True when a MySQL-protocol server greets on 127.0.0.1:$1 (handshake v10, or an error packet).
answers_mysql() {
  local hex
  hex=$(timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1 && head -c 5 <&3" 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
  [[ ${#hex} -eq 10 && ${hex:6:2} == 00 && ( ${hex:8:2} == 0a || ${hex:8:2} == ff ) ]]
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

pick_free_port() {
  local p i
  for i in $(seq 100); do
    p=$(( 20000 + RANDOM % 20000 ))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  log "no free TCP port found on $HOST"; return 1
}

# PID from a pid file, only when that process is alive and is a mariadbd/mysqld.
server_pid() {
  local pidfile=$1 pid comm
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc 0-9 <"$pidfile")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  [[ $comm == mariadbd || $comm == mysqld ]] || return 1
  echo "$pid"
}

ensure_installed() {
  command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 && return 0
  if [[ $(id -u) -ne 0 ]]; then
    log "mariadbd is not installed and this is not root. Install it with:"
    log "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server"
    exit 1
  fi
  local t0; t0=$(now)
  log "installing mariadb-server (apt) ..."
  apt-get update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server >/dev/null
  log "installed mariadb-server in $(elapsed "$t0") s"
}

cmd_start() {
  # 1. Already running?  Our own server (state file) or anything answering on a requested port.
  if [[ -f $STATE ]]; then
    local s_port s_pidfile
    s_port=$(sed -n 's/^export GT_FINETUNE_TEST_MYSQL_PORT=//p' "$STATE")
    s_pidfile=$(sed -n 's/^export GT_FINETUNE_TEST_MYSQL_PIDFILE=//p' "$STATE")
    if [[ -n $s_port && -n $s_pidfile ]] && server_pid "$s_pidfile" >/dev/null && answers_mysql "$s_port"; then
      log "already running on $HOST:$s_port (state file $STATE)"
      return 0
    fi
    log "removing stale state file $STATE"
    cmd_stop >/dev/null 2>&1 || true
  fi
  local port=${GT_FINETUNE_TEST_MYSQL_PORT:-}
  if [[ -n $port ]]; then
    if answers_mysql "$port"; then
      log "a MySQL-protocol server already answers on $HOST:$port; not starting another"
      log "(point the tests at it with GT_FINETUNE_TEST_MYSQL_HOST/PORT/USER/PASSWORD)"
      return 0
    fi
    if port_in_use "$port"; then
      log "port $port is taken by something that does not speak MySQL"; exit 1
    fi
  fi

  # 2. Install if needed, then a fresh data directory.
  ensure_installed
  [[ -n $port ]] || port=$(pick_free_port)
  local t0 dir pidfile user_args=()
  t0=$(now)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/gt-finetune-mysql.XXXXXX")
  touch "$dir/$MARKER"
  mkdir -p "$dir/data" "$dir/run"
  if [[ $(id -u) -eq 0 ]]; then
    chown -R mysql:mysql "$dir"
    user_args=(--user=mysql)
  fi
  pidfile=$dir/run/mysqld.pid

  if ! mariadb-install-db --no-defaults "${user_args[@]}" --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1; then
    log "mariadb-install-db failed:"; tail -n 30 "$dir/install.log" >&2; exit 1
  fi

  # setsid: the server outlives this script and the caller's terminal/job control.
  setsid mariadbd --no-defaults "${user_args[@]}" --datadir="$dir/data" \
    --bind-address=$HOST --port="$port" \
    --socket="$dir/run/mysqld.sock" --pid-file="$pidfile" --log-error="$dir/error.log" \
    --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
    --performance-schema=OFF --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
    </dev/null >>"$dir/mariadbd.out" 2>&1 &
  local launched=$!

  local ok=0 i
  for i in $(seq 150); do   # ~15 s
    if mariadb-admin --no-defaults --socket="$dir/run/mysqld.sock" -uroot ping >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$launched" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $ok -ne 1 ]]; then
    log "mariadbd did not answer ping within 15 s; error log tail:"
    tail -n 30 "$dir/error.log" >&2 2>/dev/null || true
    tail -n 10 "$dir/mariadbd.out" >&2 2>/dev/null || true
    kill "$launched" 2>/dev/null || true
    exit 1
  fi
  mariadb --no-defaults --socket="$dir/run/mysqld.sock" -uroot -e \
    "CREATE USER IF NOT EXISTS 'ci'@'127.0.0.1' IDENTIFIED BY 'ci'; GRANT ALL PRIVILEGES ON *.* TO 'ci'@'127.0.0.1';"

  local tmp
  tmp=$(mktemp "$STATE.XXXXXX")
  cat >"$tmp" <<STATE_EOF
export GT_FINETUNE_TEST_MYSQL_HOST=$HOST
export GT_FINETUNE_TEST_MYSQL_PORT=$port
export GT_FINETUNE_TEST_MYSQL_USER=ci
export GT_FINETUNE_TEST_MYSQL_PASSWORD=ci
export GT_FINETUNE_TEST_MYSQL_PIDFILE=$pidfile
export GT_FINETUNE_TEST_MYSQL_DIR=$dir
STATE_EOF
  chmod 644 "$tmp"
  mv -f "$tmp" "$STATE"
  log "MariaDB $(mariadbd --version | awk '{print $3}') ready on $HOST:$port in $(elapsed "$t0") s (init + start); state file $STATE"
}

cmd_env() {
  if [[ ! -f $STATE ]]; then
    log "no state file at $STATE: run \`bash .ci/mysql.sh start\` first"; exit 1
  fi
  cat "$STATE"
}

cmd_stop() {
  if [[ ! -f $STATE ]]; then
    log "nothing to stop (no state file at $STATE)"; return 0
  fi
  local pidfile dir pid i
  pidfile=$(sed -n 's/^export GT_FINETUNE_TEST_MYSQL_PIDFILE=//p' "$STATE")
  dir=$(sed -n 's/^export GT_FINETUNE_TEST_MYSQL_DIR=//p' "$STATE")
  if [[ -n $pidfile ]] && pid=$(server_pid "$pidfile"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do   # ~10 s
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "mariadbd $pid ignored TERM for 10 s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
    log "stopped mariadbd $pid"
  else
    log "no running server recorded in $STATE"
  fi
  # Delete the data directory only if this script made it (marker file present).
  if [[ -n $dir && -d $dir && -f $dir/$MARKER ]]; then
    rm -rf -- "$dir"
  fi
  rm -f -- "$STATE"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
