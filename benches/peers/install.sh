#!/usr/bin/env bash
# Installs the comparison peers for `ferry-bench compare` and builds the C load client.
#
#   benches/peers/install.sh           install packages, build into target/bench-peers/
#   benches/peers/install.sh --smoke   the same, then start each peer on a free loopback port,
#                                      pass a few thousand messages through it, and stop it
#
# Safe to run again: packages already present are not fetched, binaries are rebuilt.
# Needs root (uses sudo otherwise) and Debian's package archive; nothing else is downloaded.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${BENCH_PEERS_OUT:-$root/target/bench-peers}
smoke=0
for arg in "$@"; do
    case "$arg" in
    --smoke) smoke=1 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    command -v sudo >/dev/null || { say "not root and no sudo"; exit 1; }
    SUDO=(sudo)
fi

# ---- packages -----------------------------------------------------------------------------
pkgs=(rabbitmq-server libqpid-proton11-dev libqpid-proton11-dev-examples gcc make)
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # Keep the packages' maintainer scripts from starting the system rabbitmq-server (and its
    # epmd): our nodes are private ones started by rabbitmq.sh. policy-rc.d is honoured by both
    # invoke-rc.d and deb-systemd-invoke; an existing one is left as it is.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        made_policy=1
    fi
    cleanup_policy() { if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
    trap cleanup_policy EXIT
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null
    cleanup_policy
    trap - EXIT
fi

# If a system node got started anyway (an older install, or a host without policy-rc.d that
# ran it through systemd), stop it and keep it from coming back: it would hold 5672, 25672
# and epmd's 4369.
if [ -d /run/systemd/system ] && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    say "stopping and disabling the system rabbitmq-server service"
    "${SUDO[@]}" systemctl stop rabbitmq-server || true
    "${SUDO[@]}" systemctl disable rabbitmq-server >/dev/null 2>&1 || true
elif pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
    say "stopping the system rabbitmq node (user rabbitmq)"
    "${SUDO[@]}" timeout 60 /usr/sbin/rabbitmqctl stop >/dev/null 2>&1 || true
fi

# ---- builds -------------------------------------------------------------------------------
mkdir -p "$out"

# Debian's -dev package ships only the all-in-one libqpid-proton.so for linking; the split
# core and proactor libraries are there under their sonames, so link those by file name.
proton_libs=""
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int main(void){return 0;}' >"$probe/t.c"
candidates=("-lqpid-proton-core -lqpid-proton-proactor")
# The shortest existing name among the candidates: the soname (libX.so.N), not libX.so.N.M.P.
shortest() {
    local f best=""
    for f in "$@"; do
        [ -e "$f" ] || continue
        if [ -z "$best" ] || [ ${#f} -lt ${#best} ]; then best=$f; fi
    done
    echo "$best"
}
core=$(shortest /usr/lib/*/libqpid-proton-core.so.[0-9]* /usr/lib/libqpid-proton-core.so.[0-9]*)
proactor=$(shortest /usr/lib/*/libqpid-proton-proactor.so.[0-9]* /usr/lib/libqpid-proton-proactor.so.[0-9]*)
if [ -n "$core" ] && [ -n "$proactor" ]; then
    candidates+=("-l:$(basename "$core") -l:$(basename "$proactor")")
fi
candidates+=("-lqpid-proton")
for c in "${candidates[@]}"; do
    # shellcheck disable=SC2086
    if gcc "$probe/t.c" -o "$probe/t" -Wl,--no-as-needed $c -lpthread 2>/dev/null; then
        proton_libs=$c
        break
    fi
done
[ -n "$proton_libs" ] || { say "cannot link against Qpid Proton"; exit 1; }

examples=$(dpkg -L libqpid-proton11-dev-examples | grep '/examples/c/broker\.c$' | head -n1)
[ -f "$examples" ] || { say "broker.c not found in libqpid-proton11-dev-examples"; exit 1; }
exdir=$(dirname "$examples")

# The example broker includes its own thread.h shim, so only its directory is needed.
# shellcheck disable=SC2086
gcc -O2 -I"$exdir" -o "$out/proton-broker" "$exdir/broker.c" $proton_libs -lpthread
# shellcheck disable=SC2086
gcc -O2 -Wall -Wextra -o "$out/proton-load" "$root/benches/proton-load/proton_load.c" $proton_libs -lpthread

chmod +x "$here/rabbitmq.sh"

# ---- smoke test ---------------------------------------------------------------------------
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pair() { # URL ADDRESS: 2000 messages through a receiver and a sender, both must finish
    local url=$1 addr=$2 rp rc=0
    "$out/proton-load" --url "$url" --address "$addr" --role receive --count 2000 --duration-secs 30 >"$probe/recv.json" &
    rp=$!
    sleep 0.5
    "$out/proton-load" --url "$url" --address "$addr" --role send --count 2000 --size 256 --duration-secs 30 >"$probe/send.json" || rc=1
    wait "$rp" || rc=1
    say "  send:    $(cat "$probe/send.json")"
    say "  receive: $(cat "$probe/recv.json")"
    return $rc
}

if [ "$smoke" = 1 ]; then
    status=0
    port=$(free_port)
    say "smoke: proton-broker on 127.0.0.1:$port"
    "$out/proton-broker" 127.0.0.1 "$port" >"$probe/broker.log" 2>&1 &
    bp=$!
    for _ in $(seq 50); do grep -q '^listening on' "$probe/broker.log" && break; sleep 0.1; done
    pair "127.0.0.1:$port" smoke || status=1
    kill "$bp" 2>/dev/null || true
    wait "$bp" 2>/dev/null || true

    port=$(free_port)
    say "smoke: rabbitmq on 127.0.0.1:$port"
    if rpid=$("$here/rabbitmq.sh" start "$port" "$probe/rabbit"); then
        say "  beam pid $rpid"
        pair "127.0.0.1:$port" /queue/smoke || status=1
    else
        status=1
    fi
    "$here/rabbitmq.sh" stop "$port" "$probe/rabbit" || status=1
    if [ "$status" != 0 ]; then
        say "smoke: FAILED"
        exit 1
    fi
    say "smoke: ok"
fi

# ---- summary ------------------------------------------------------------------------------
rmq_version=$(dpkg-query -W -f='${Version}' rabbitmq-server)
proton_version=$(dpkg-query -W -f='${Version}' libqpid-proton11-dev)
cat <<EOF
bench peers ready:
  rabbitmq-server $rmq_version   start: $here/rabbitmq.sh start PORT DIR   (prints the beam.smp pid)
                                      stop:  $here/rabbitmq.sh stop PORT DIR
  proton C broker ($proton_version) $out/proton-broker HOST PORT   (from $exdir/broker.c)
  proton load client              $out/proton-load --help
  linked with: $proton_libs
EOF
