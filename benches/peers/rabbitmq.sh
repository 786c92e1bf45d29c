#!/usr/bin/env bash
# A private RabbitMQ node for benchmarks, independent of the system service.
#
#   rabbitmq.sh start PORT DIR   start a node whose only listener is 127.0.0.1:PORT
#                                (AMQP 0-9-1 and, through the amqp1_0 plugin, AMQP 1.0);
#                                state, logs and config live under DIR, which is wiped of
#                                previous message store data. Prints the beam.smp PID on
#                                stdout once PORT accepts connections.
#   rabbitmq.sh stop PORT DIR    stop that node (SIGTERM, then SIGKILL after a grace period)
#                                and its private epmd, and wait for both to be gone.
#   rabbitmq.sh status PORT DIR  print the PID and exit 0 if the node is running, else exit 1.
#
# Environment knobs:
#   RABBITMQ_START_TIMEOUT   seconds to wait for PORT (default 60)
#   RABBITMQ_STOP_TIMEOUT    seconds to wait for a clean stop before SIGKILL (default 30)
#   RABBITMQ_BUSY_WAIT=1     keep the Erlang schedulers' default busy-waiting; by default it is
#                            turned off (+sbwt none ...) so idle spinning does not count as
#                            broker CPU in measurements
#   RABBITMQ_EXTRA_ERL_ARGS  appended to the emulator arguments
#
# Users: guest/guest (SASL PLAIN, allowed from loopback) and SASL ANONYMOUS mapped to guest.
# AMQP 1.0 addresses in 3.10: /queue/NAME (declares NAME if missing), /amq/queue/NAME
# (existing queue), /exchange/X/KEY, /topic/KEY.
set -euo pipefail

RMQ_BIN=/usr/lib/rabbitmq/bin

usage() {
    echo "usage: $0 start|stop|status PORT DIR" >&2
    exit 2
}

[ $# -eq 3 ] || usage
cmd=$1
port=$2
case "$port" in '' | *[!0-9]*) echo "rabbitmq.sh: PORT must be a number" >&2; exit 2 ;; esac
mkdir -p "$3"
dir=$(cd "$3" && pwd)
state="$dir/rabbitmq.state"
node="ferrybench-$port@localhost"

log() { echo "rabbitmq.sh: $*" >&2; }

# A loopback TCP port nobody listens on right now.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Running and not a zombie (an orphan's zombie may linger where init does not reap).
alive() {
    [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

read_state() {
    PID="" EPMD_PORT="" STATE_PORT=""
    if [ -f "$state" ]; then
        # shellcheck disable=SC1090
        . "$state"
    fi
}

do_status() {
    read_state
    if alive "$PID"; then
        echo "$PID"
        return 0
    fi
    return 1
}

do_stop() {
    read_state
    if alive "$PID"; then
        kill -TERM "$PID" 2>/dev/null || true
        local deadline=$((SECONDS + ${RABBITMQ_STOP_TIMEOUT:-30}))
        while alive "$PID" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if alive "$PID"; then
            log "node $PID did not stop in time; killing it"
            kill -KILL "$PID" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while alive "$PID" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        fi
    fi
    if [ -n "$EPMD_PORT" ]; then
        # Our private epmd; it only answers on loopback and on this port.
        ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 10))
        while port_open "$EPMD_PORT" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    fi
    rm -f "$state"
}

do_start() {
    read_state
    if alive "$PID"; then
        if [ "$STATE_PORT" = "$port" ]; then
            echo "$PID"
            return 0
        fi
        log "a node from $dir is already running (pid $PID, port $STATE_PORT)"
        exit 1
    fi
    if port_open "$port"; then
        log "127.0.0.1:$port is already in use"
        exit 1
    fi
    [ -x "$RMQ_BIN/rabbitmq-server" ] || { log "rabbitmq-server is not installed (run benches/peers/install.sh)"; exit 1; }

    # Fresh message store every start; logs are kept per start under log/.
    rm -rf "$dir/mnesia" "$dir/rabbit.pid"
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"

    local epmd_port dist_port
    epmd_port=${ERL_EPMD_PORT_OVERRIDE:-$(free_port)}
    dist_port=$(free_port)
    while [ "$dist_port" = "$epmd_port" ] || [ "$dist_port" = "$port" ]; do dist_port=$(free_port); done

    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$port
loopback_users.guest = false
default_user = guest
default_pass = guest
default_vhost = /
amqp1_0.default_user = guest
amqp1_0.default_vhost = /
amqp1_0.protocol_strict_mode = false
log.console = false
log.file.level = info
disk_free_limit.absolute = 50MB
EOF
    echo "[rabbitmq_amqp1_0]." >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"

    local erl_args="-kernel inet_dist_use_interface {127,0,0,1}"
    if [ "${RABBITMQ_BUSY_WAIT:-0}" != 1 ]; then
        erl_args="$erl_args +sbwt none +sbwtdcpu none +sbwtdio none"
    fi
    erl_args="$erl_args ${RABBITMQ_EXTRA_ERL_ARGS:-}"

    echo "PID=\"\"; EPMD_PORT=$epmd_port; STATE_PORT=$port" >"$state"

    (
        cd "$dir"
        export HOME="$dir/home"
        export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        export RABBITMQ_NODENAME="$node"
        export RABBITMQ_USE_LONGNAME=false
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_PID_FILE="$dir/rabbit.pid"
        export RABBITMQ_DIST_PORT="$dist_port"
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$erl_args"
        export ERL_EPMD_PORT="$epmd_port"
        export ERL_EPMD_ADDRESS=127.0.0.1
        exec setsid "$RMQ_BIN/rabbitmq-server" </dev/null >"$dir/log/startup.log" 2>&1
    ) &
    local launcher=$!

    local deadline=$((SECONDS + ${RABBITMQ_START_TIMEOUT:-60}))
    local pid=""
    while [ $SECONDS -lt $deadline ]; do
        if [ -z "$pid" ] && [ -s "$dir/rabbit.pid" ]; then
            pid=$(tr -dc '0-9' <"$dir/rabbit.pid")
            echo "PID=$pid; EPMD_PORT=$epmd_port; STATE_PORT=$port" >"$state"
        fi
        if [ -n "$pid" ] && port_open "$port"; then
            echo "$pid"
            return 0
        fi
        if ! alive "$launcher" && ! alive "$pid"; then
            log "rabbitmq-server exited during start; see $dir/log/startup.log and $dir/log/"
            tail -n 20 "$dir/log/startup.log" >&2 || true
            do_stop
            exit 1
        fi
        sleep 0.25
    done
    log "node did not listen on 127.0.0.1:$port within ${RABBITMQ_START_TIMEOUT:-60}s; stopping it"
    if [ -z "$pid" ]; then
        # No pid file yet: the launcher's child is the emulator.
        pid=$(pgrep -P "$launcher" | head -n1 || true)
        echo "PID=$pid; EPMD_PORT=$epmd_port; STATE_PORT=$port" >"$state"
    fi
    do_stop
    exit 1
}

case "$cmd" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) usage ;;
esac
