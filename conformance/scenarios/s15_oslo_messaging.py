"""Scenario 15: OpenStack oslo.messaging 14.9.3 and its AMQP 1.0 driver (pyngus + Proton),
unmodified, in both of its addressing modes.

For each of `[oslo_messaging_amqp] addressing_mode = legacy` and `= routable`, with
`transport_url = amqp://127.0.0.1:PORT/` (no user: the plain AMQP header, no SASL), two RPC
server processes (threading executor) on one topic and a notification listener process
attach, and their links must be on the mode's addresses:
  legacy    exclusive.<exchange>.<topic>.<server>, broadcast.<exchange>.<topic>.all,
            unicast.<exchange>.<topic>, and unicast.<exchange>.<notify-topic>.<priority>;
  routable  openstack.org/om/rpc/{unicast,multicast,anycast}/<exchange>/<topic>[/<server>]
            and openstack.org/om/notify/anycast/<exchange>/<notify-topic>.<priority>.
Then one client process (retry=0, so nothing is re-sent) does, in order:
  1. RPCClient.call(echo) × 4 on the topic: each reply comes back with the value, from one of
     the two servers, and exactly one server handled each call;
  2. a call to each server by name (Target server=...): only that server handles it;
  3. a cast with fanout=True: each of the two servers receives it exactly once;
  4. Notifier.info and Notifier.error: the listener gets each once, with its priority,
     event type, publisher id and payload.
No process may reconnect or log a driver warning or error (clients/oslo_common.py turns those
into error lines), and each connects exactly once per transport.

The oslo processes run with the venv that install-oslo.sh makes (target/conformance-venv,
or FERRY_OSLO_PYTHON).
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (CLIENTS, ROOT, Broker, Child, Failure, check, check_eq, gather,  # noqa: E402
                     log, run_scenario)

OSLO_PY = os.environ.get("FERRY_OSLO_PYTHON",
                         os.path.join(ROOT, "target", "conformance-venv", "bin", "python"))
EXCHANGE = "openstack"  # oslo's control_exchange default: part of every address
SERVERS = ("srv-a", "srv-b")
CALLS = 4
EVENT_TYPE = "ferry.s15.test"
PRIORITIES = ("info", "warn", "error")  # the listener's endpoint methods, one link each
SENT_PRIORITIES = ("info", "error")


def expected_addresses(mode, topic, notify_topic):
    """The link addresses each process must attach, by addressing mode."""
    if mode == "legacy":
        server = {s: {"exclusive.%s.%s.%s" % (EXCHANGE, topic, s),
                      "broadcast.%s.%s.all" % (EXCHANGE, topic),
                      "unicast.%s.%s" % (EXCHANGE, topic)} for s in SERVERS}
        listener = {"unicast.%s.%s.%s" % (EXCHANGE, notify_topic, p) for p in PRIORITIES}
    else:
        def rpc(kind):
            return "openstack.org/om/rpc/%s/%s/%s" % (kind, EXCHANGE, topic)
        server = {s: {rpc("unicast") + "/" + s, rpc("multicast"), rpc("anycast")}
                  for s in SERVERS}
        listener = {"openstack.org/om/notify/anycast/%s/%s.%s" % (EXCHANGE, notify_topic, p)
                    for p in PRIORITIES}
    return server, listener


def write_conf(workdir, broker, mode):
    """The config file a service would have: transport URL and addressing mode. The metrics
    client's idle thread would otherwise keep each process alive 10 s after its last call."""
    path = os.path.join(workdir, "oslo-%s.conf" % mode)
    with open(path, "w") as f:
        f.write("[DEFAULT]\n"
                "transport_url = amqp://127.0.0.1:%d/\n"
                "\n"
                "[oslo_messaging_amqp]\n"
                "addressing_mode = %s\n"
                "\n"
                "[oslo_messaging_metrics]\n"
                "metrics_thread_stop_timeout = 1\n" % (broker.port, mode))
    return path


def oslo_client(name, script, args, workdir):
    return Child(name, [OSLO_PY, os.path.join(CLIENTS, script)] + [str(a) for a in args], workdir,
                 env={"PYTHONDONTWRITEBYTECODE": "1"})


def of(child, event):
    return [l for l in child.received if l.get("event") == event]


def wait_ready(child, want, what):
    ready = child.wait_for(lambda l: l.get("event") == "ready", 30, "%s's links" % what)
    check_eq(set(ready["addresses"]), want, "%s's link addresses" % what)


def check_clean(child, connections):
    """No error line, and one connection per transport (a second one is a reconnect)."""
    errors = [l["error"] for l in child.received if l.get("error")]
    check(not errors, "%s reported: %s%s" % (child.name, "; ".join(errors), child.stderr_tail()))
    check_eq(len(of(child, "connected")), connections,
             "%s: connections made (a second one is a reconnect)" % child.name)


def check_calls(client, servers, mode):
    """Steps 1 and 2: every reply is right, and the right server handled each call once."""
    handled = {}  # value -> [server, ...] from the servers' own lines
    for s in servers.values():
        for l in of(s, "call"):
            handled.setdefault(l["value"], []).append(l["server"])
    replies = of(client, "reply")
    anycast = [r for r in replies if r["step"] == "call"]
    named = [r for r in replies if r["step"] == "call-server"]
    check_eq(len(anycast), CALLS, "%s: replies to calls on the topic" % mode)
    check_eq(len(named), len(SERVERS), "%s: replies to calls to named servers" % mode)
    for r in anycast:
        check(r["reply"]["value"] == r["value"] and r["reply"]["server"] in SERVERS,
              "%s: call %r got reply %r" % (mode, r["value"], r["reply"]))
        check_eq(handled.get(r["value"]), [r["reply"]["server"]],
                 "%s: servers that handled call %r" % (mode, r["value"]))
    for r in named:
        check_eq(r["reply"], {"server": r["target_server"], "value": r["value"]},
                 "%s: reply to the call to %s" % (mode, r["target_server"]))
        check_eq(handled.get(r["value"]), [r["target_server"]],
                 "%s: servers that handled the call to %s" % (mode, r["target_server"]))
    check_eq(len(handled), CALLS + len(SERVERS), "%s: calls the servers handled" % mode)
    by = {s: sum(1 for r in anycast if r["reply"]["server"] == s) for s in SERVERS}
    return by


def run_mode(workdir, broker, mode):
    topic, notify_topic, tag = "s15-%s" % mode, "s15-%s-notifications" % mode, "fanout-%s" % mode
    conf = write_conf(workdir, broker, mode)
    want_server, want_listener = expected_addresses(mode, topic, notify_topic)

    listener = oslo_client("%s-listener" % mode, "oslo_listener.py", [conf, notify_topic], workdir)
    servers = {s: oslo_client("%s-%s" % (mode, s), "oslo_server.py", [conf, topic, s], workdir)
               for s in SERVERS}
    wait_ready(listener, want_listener, listener.name)
    for s, child in servers.items():
        wait_ready(child, want_server[s], child.name)

    client = oslo_client("%s-client" % mode, "oslo_client.py",
                         [conf, topic, "--servers", ",".join(SERVERS), "--calls", CALLS,
                          "--tag", tag, "--notify-topic", notify_topic,
                          "--event-type", EVENT_TYPE, "--label", mode], workdir)
    started = time.monotonic()
    client.expect_success(90)
    took = time.monotonic() - started

    everyone = [listener] + list(servers.values())
    gather(everyone, lambda: (all(of(c, "cast") for c in servers.values())
                              and len(of(listener, "notification")) >= len(SENT_PRIORITIES)),
           15, "%s: the fanout cast at every server and both notifications" % mode)
    time.sleep(0.5)  # a duplicate would arrive in this time
    for c in everyone:
        c.signal(signal.SIGTERM)  # all at once: each takes about a second to stop
    for c in everyone:
        c.stop()
        check(of(c, "stopped"), "%s did not stop cleanly%s" % (c.name, c.stderr_tail()))

    check_clean(client, 2)  # one RPC transport, one notification transport
    for c in everyone:
        check_clean(c, 1)
    by = check_calls(client, servers, mode)

    for s, c in servers.items():
        check_eq([l["tag"] for l in of(c, "cast")], [tag], "%s: fanout casts %s received" % (mode, s))

    got = [(n["priority"], n["publisher_id"], n["event_type"], n["payload"])
           for n in of(listener, "notification")]
    want = [(p, "ferry.s15", EVENT_TYPE, {"label": mode, "priority": p, "n": 42})
            for p in SENT_PRIORITIES]
    check_eq(sorted(got, key=str), sorted(want, key=str), "%s: notifications received" % mode)

    log("%s: %d calls answered (%s), a call to each of %s answered by it alone, the fanout "
        "cast at both servers, notifications %s received; client %.1fs"
        % (mode, CALLS, ", ".join("%s %d" % kv for kv in by.items()), " and ".join(SERVERS),
           "/".join(SENT_PRIORITIES), took))


def main(workdir):
    if not os.access(OSLO_PY, os.X_OK):
        raise Failure("no oslo.messaging venv python at %s: run bash conformance/install-oslo.sh"
                      % OSLO_PY)
    broker = Broker(workdir, log_level="debug")  # shows what became of each message
    for mode in ("legacy", "routable"):
        run_mode(workdir, broker, mode)
        broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
