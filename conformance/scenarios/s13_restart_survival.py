"""Scenario 13: durable messages survive a broker restart, after SIGTERM and after kill -9.

For each way of stopping the broker (SIGTERM: graceful; SIGKILL: no warning), on a data dir
of its own:

1. a broker starts; a Proton sender (in-process) and a rhea sender process send N durable
   messages each (header durable = true, unsettled), to two auto-created (so durable)
   queues, at the same time. Each waits until the broker has accepted every message;
2. the broker is stopped: SIGTERM (it must exit 0 by itself), or SIGKILL right after the
   last accept;
3. a new broker process starts on the same data dir (new config, log and port): a rhea
   consumer gets the Proton-sent queue and a Proton consumer the rhea-sent one, accepting
   each message. Each gets exactly its N messages, in the order they were sent, once each,
   unsettled, with delivery-count 0 (none was ever delivered before the restart);
4. that broker is stopped with SIGTERM, and a third one started on the same data dir: both
   queues are empty (receivers with credit get nothing within a second), so the settled
   messages did not come back.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, check_eq, gather, kill_process, log,  # noqa: E402
                     messages_of, node_client, python_client, run_scenario, stop_process)
from proton import Message  # noqa: E402
from proton_util import ClientError, Run, run, send_messages  # noqa: E402

N = 2000
QUIET = 1.0  # seconds a receiver waits for anything more (a duplicate, a message back from the dead)
STALL = 5.0  # seconds without a message after which the consumers are done waiting

_brokers = []  # (label, Broker) of the run in progress, for their logs on failure


class Nothing(Run):
    """Receivers (credit 100 each) on several addresses on one connection; finishes `quiet`
    seconds after every link is attached. Whatever arrives is kept (and accepted)."""

    def __init__(self, url, addresses, quiet):
        super().__init__(timeout=20, prefetch=100)
        self.url = url
        self.addresses = addresses
        self.quiet = quiet
        self.opened = 0
        self.got = {a: [] for a in addresses}

    def progress(self):
        return "%d of %d receivers attached" % (self.opened, len(self.addresses))

    def setup(self):
        conn = self.connect(self.url)
        self.links = {}
        for a in self.addresses:
            self.links[self.container.create_receiver(conn, a).name] = a

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.opened += 1
            if self.opened == len(self.addresses):
                self.after(self.quiet, self.finish)

    def on_message(self, event):
        self.got[self.links[event.link.name]].append(event.message.body)


def start_broker(base, data_dir, n):
    """Broker process n of a run: its own directory (config, log), the run's shared data dir."""
    d = os.path.join(base, "broker%d" % n)
    os.makedirs(d)
    b = Broker(d, broker={"data_dir": data_dir})
    _brokers.append(("broker %d" % n, b))
    return b


def recovered(broker):
    """queue -> message count from the broker's "durable queue recovered" log lines."""
    out = {}
    try:
        with open(broker.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        if "durable queue recovered" in line:
            q = re.search(r"queue=(\S+)", line)
            m = re.search(r"messages=(\d+)", line)
            if q and m:
                out[q.group(1)] = int(m.group(1))
    return out


def stop_gracefully(broker, what):
    t0 = time.monotonic()
    stop_process(broker.proc, grace=10.0)  # SIGTERM; SIGKILL only if it is still up after 10 s
    dt = time.monotonic() - t0
    check_eq(broker.proc.returncode, 0, "%s: exit code after SIGTERM" % what)
    return dt


def check_received(child, tag, what):
    got = messages_of(child)
    seqs = [m["seq"] for m in got]
    dups = len(seqs) - len(set(seqs))
    missing = sorted(set(range(N)) - set(seqs))
    check(dups == 0, "%s: %d duplicates" % (what, dups))
    check(not missing, "%s: %d of %d missing, first %s" % (what, len(missing), N, missing[:10]))
    check_eq(len(seqs), N, "%s: messages received" % what)
    check(seqs == list(range(N)), "%s: not in send order; first differences %s"
          % (what, [(i, s) for i, s in enumerate(seqs) if s != i][:10]))
    bad_body = [m for m in got if m["body"] != "%s-%05d" % (tag, m["seq"])]
    check(not bad_body, "%s: bodies changed: %s" % (what, bad_body[:3]))
    bad_dc = [(m["seq"], m["dc"]) for m in got if m["dc"] != 0]
    check(not bad_dc, "%s: delivery-count != 0 for never-delivered messages: %s" % (what, bad_dc[:10]))
    check(not any(m["settled"] for m in got), "%s: deliveries were pre-settled" % what)


def one_run(workdir, how):
    _brokers.clear()
    base = os.path.join(workdir, how)
    data_dir = os.path.join(base, "data")
    from_proton = "s13.%s.from-proton" % how
    from_rhea = "s13.%s.from-rhea" % how
    proton_tag = "%s-proton" % how
    rhea_tag = "%s-rhea" % how

    # 1. Send N durable messages with each client, concurrently; every one accepted.
    b1 = start_broker(base, data_dir, 1)
    t0 = time.monotonic()
    sender = node_client("rhea-sender-%s" % how, "rhea_durable_send.js",
                         [b1.port, from_rhea, N, "--tag", rhea_tag, "--timeout", 90], workdir)
    msgs = [Message(body="%s-%05d" % (proton_tag, i), properties={"seq": i}, durable=True)
            for i in range(N)]
    try:
        h = send_messages(b1.url(), from_proton, msgs, timeout=90)
    except ClientError as e:
        raise Failure("%s: Proton sending %d durable messages: %s" % (how, N, e)) from None
    check_eq(h.accepted, N, "%s: Proton sends accepted" % how)
    lines = sender.expect_success(90)
    done = [l for l in lines if l.get("event") == "sent"]
    check(done and done[-1]["accepted"] == N, "%s: the rhea sender did not report %d accepted: %s"
          % (how, N, done))
    send_time = time.monotonic() - t0
    b1.check_alive()

    # 2. Stop the broker.
    if how == "sigterm":
        dt = stop_gracefully(b1, "broker 1")
        stopped = "SIGTERM, exited 0 after %.2fs" % dt
    else:
        kill_process(b1.proc)
        check_eq(b1.proc.returncode, -9, "broker 1: exit status after SIGKILL")
        stopped = "SIGKILL right after the last accept"

    # 3. A new broker process on the same data dir; receive everything, crossing clients.
    b2 = start_broker(base, data_dir, 2)
    rec = recovered(b2)
    rhea_c = node_client("rhea-consumer-%s" % how, "rhea_consumer.js",
                         [b2.port, from_proton, "--credit", 100], workdir)
    proton_c = python_client("proton-consumer-%s" % how, "proton_consumer.py",
                             [b2.url(), from_rhea, "--credit", 100], workdir)
    consumers = [rhea_c, proton_c]
    for c in consumers:
        c.wait_for(lambda l: l.get("event") == "ready", 20, "its receiver to attach")
    seen = {"count": -1, "at": time.monotonic()}

    def all_in_or_stalled():
        # A lost message never arrives: stop waiting once nothing came for STALL seconds, and
        # let the checks below say what is missing.
        count = sum(len(messages_of(c)) for c in consumers)
        if count != seen["count"]:
            seen.update(count=count, at=time.monotonic())
        return (all(len(messages_of(c)) >= N for c in consumers)
                or time.monotonic() - seen["at"] > STALL)

    gather(consumers, all_in_or_stalled, 60, "%s: %d messages on each queue after the restart"
           % (how, N))
    time.sleep(QUIET)  # a duplicate would arrive within this second
    gather(consumers, lambda: True, 1, "late messages")
    for c in consumers:
        c.stop()
    check_received(rhea_c, proton_tag, "%s: rhea consumer of the Proton-sent queue" % how)
    check_received(proton_c, rhea_tag, "%s: Proton consumer of the rhea-sent queue" % how)
    b2.check_alive()

    # 4. Clean restart after consuming: nothing comes back.
    stop_gracefully(b2, "broker 2")
    b3 = start_broker(base, data_dir, 3)
    rec3 = recovered(b3)
    try:
        h = run(Nothing(b3.url(), [from_proton, from_rhea], QUIET))
    except ClientError as e:
        raise Failure("%s: receiving on the third broker: %s" % (how, e)) from None
    for a in (from_proton, from_rhea):
        check(not h.got[a], "%s: %d settled messages came back on %s after a clean restart, "
              "first %s" % (how, len(h.got[a]), a, h.got[a][:5]))
    b3.check_alive()
    stop_gracefully(b3, "broker 3")

    log("%s: %d Proton + %d rhea durable messages sent and accepted in %.1fs; broker stopped "
        "with %s" % (how, N, N, send_time, stopped))
    log("%s: restarted broker recovered %s; the rhea consumer got %d, the Proton consumer %d, "
        "each exactly once, in send order, delivery-count 0"
        % (how, rec or "(no recovery log line)", len(messages_of(rhea_c)), len(messages_of(proton_c))))
    log("%s: after consuming and a clean restart: recovered %s; 0 messages on either queue "
        "within %.0fs" % (how, rec3 or "(no recovery log line)", QUIET))


def main(workdir):
    for how in ("sigterm", "sigkill"):
        try:
            one_run(workdir, how)
        except Failure as e:
            tails = "".join("\n  [%s]%s" % (label, b.log_tail(20)) for label, b in _brokers)
            raise Failure("%s%s" % (e, tails)) from None


if __name__ == "__main__":
    run_scenario(main)
