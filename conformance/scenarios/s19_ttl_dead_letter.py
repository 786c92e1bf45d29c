"""Scenario 19: expired messages are never delivered; they go to the dead-letter queue.

Two queues are declared with `message_ttl = "1s"` and `dead_letter_queue = "s19.dlq"`.

Part 1, messages waiting with no consumer (queue `s19.wait`). Proton sends six messages, then
rhea five; every one is accepted:

  seq  sender  expiry fields                          fate
  0    Proton  ttl 300 ms                             expires
  1    Proton  ttl 60 s                               kept (its own ttl beats the queue's 1 s)
  2    Proton  none                                   expires (the queue's message_ttl)
  3    Proton  absolute-expiry-time now + 300 ms      expires
  4    Proton  absolute-expiry-time now + 60 s        kept
  5    Proton  ttl 60 s, absolute-expiry now + 300 ms expires (absolute-expiry-time wins)
  6    rhea    ttl 300 ms                             expires
  7    rhea    ttl 60 s                               kept
  8    rhea    none                                   expires
  9    rhea    absolute-expiry-time now + 300 ms      expires
  10   rhea    absolute-expiry-time now + 60 s        kept

1.5 s later a rhea consumer receives exactly 1, 4, 7, 10, in order, unsettled, with
delivery-count 0; those with a ttl carry what is left of it (more than 0, at most 59 s), the
others no ttl.

Part 2, messages expiring while a consumer is busy (queue `s19.busy`). A Proton consumer
attaches with credit 1; then rhea sends 12 messages, even seqs with ttl 60 s, odd seqs with
ttl 200 ms. The consumer holds the first message for 1 s before accepting it and granting
the next credit, then takes one at a time: by then every odd message has expired, so it
receives exactly the even ones, in order, each with the ttl it has left (the first, delivered on
arrival, at most 60 s; the others, delivered after the hold, at most 59.5 s).

Finally a Proton consumer of `s19.dlq` receives exactly the 13 expired messages (7 from
`s19.wait`, 6 from `s19.busy`), each once, with message-annotations
`x-opt-deadletter-reason` = "expired" and `x-opt-deadletter-source` = the queue it expired
in, no `x-opt-deadletter-description`, its body and application-properties unchanged, and
delivery-count 0 (it was never delivered). Dead letters do not expire again in the DLQ. Their
order is not checked: they arrive as they expire, so the 300 ms ones come before those on
the queue's 1 s.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, gather, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, Run, run, send_messages  # noqa: E402
from route_common import broker_with, check_exactly, write_spec  # noqa: E402

WAIT = "s19.wait"
BUSY = "s19.busy"
DLQ = "s19.dlq"
POLICY = {"message_ttl": "1s", "dead_letter_queue": DLQ}

REASON = "x-opt-deadletter-reason"
SOURCE = "x-opt-deadletter-source"
DESCRIPTION = "x-opt-deadletter-description"

PART1_KEPT = [1, 4, 7, 10]
PART1_EXPIRED = [0, 2, 3, 5, 6, 8, 9]
PART2 = list(range(100, 112))
PART2_KEPT = [s for s in PART2 if s % 2 == 0]
PART2_EXPIRED = [s for s in PART2 if s % 2 == 1]
WITH_TTL = {1, 7} | set(PART2_KEPT)  # kept messages that carry a header ttl


def body(seq):
    return "ttl %d" % seq


class BusyConsumer(Run):
    """Credit 1 at a time: the first message is held 1 s before it is accepted and the next
    credit given; later ones are accepted after 50 ms. `start_sender` runs once attached."""

    def __init__(self, url, start_sender, expected):
        super().__init__(timeout=30, prefetch=0, auto_accept=False)
        self.url = url
        self.start_sender = start_sender
        self.expected = expected
        self.got = []  # (seq, ttl ms or None, delivery-count)

    def progress(self):
        return "received %s" % [g[0] for g in self.got]

    def setup(self):
        self.receiver = self.container.create_receiver(self.connect(self.url), BUSY)

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.receiver.flow(1)
            self.start_sender()

    def on_message(self, event):
        m = event.message
        self.got.append(((m.properties or {}).get("seq"), int(round(m.ttl * 1000)) if m.ttl else None,
                         m.delivery_count))
        d = event.delivery

        def next_one():
            if self.finished:
                return
            self.accept(d)
            self.receiver.flow(1)

        self.after(1.0 if len(self.got) == 1 else 0.05, next_one)
        if len(self.got) == self.expected:
            self.after(1.0, self.finish)  # anything more (an expired one) would arrive by then


def check_ttl_left(seq, ttl, what, most=59000):
    """A kept message with a ttl carries what is left of it: over 0, at most `most` ms."""
    if seq in WITH_TTL:
        check(ttl is not None and 0 < ttl <= most,
              "%s: seq %d (ttl 60 s) carries ttl %r; expected what is left, in (0, %d]"
              % (what, seq, ttl, most))
    else:
        check(ttl is None, "%s: seq %d was sent without ttl but carries ttl %r" % (what, seq, ttl))


def main(workdir):
    broker = broker_with(workdir, queues=[dict(name=WAIT, **POLICY), dict(name=BUSY, **POLICY)])

    # Part 1: messages waiting in s19.wait with no consumer.
    now = time.time()
    msgs = [
        Message(body=body(0), properties={"seq": 0}, ttl=0.3),
        Message(body=body(1), properties={"seq": 1}, ttl=60),
        Message(body=body(2), properties={"seq": 2}),
        Message(body=body(3), properties={"seq": 3}, expiry_time=now + 0.3),
        Message(body=body(4), properties={"seq": 4}, expiry_time=now + 60),
        Message(body=body(5), properties={"seq": 5}, ttl=60, expiry_time=now + 0.3),
    ]
    try:
        send_messages(broker.url(), WAIT, msgs, timeout=20)
    except ClientError as e:
        raise Failure("Proton sending to %s: %s" % (WAIT, e)) from None
    now_ms = int(time.time() * 1000)
    spec = [
        {"body": body(6), "props": {"seq": 6}, "ttl": 300},
        {"body": body(7), "props": {"seq": 7}, "ttl": 60000},
        {"body": body(8), "props": {"seq": 8}},
        {"body": body(9), "props": {"seq": 9}, "absolute_expiry_time": now_ms + 300},
        {"body": body(10), "props": {"seq": 10}, "absolute_expiry_time": now_ms + 60000},
    ]
    sender = node_client("rhea-sender-wait", "route_rhea_send.js",
                         [broker.port, WAIT, write_spec(workdir, "wait", spec)], workdir)
    done = [l for l in sender.expect_success(20) if l.get("event") == "done"]
    check(done and done[0]["outcomes"] == ["accepted"] * len(spec),
          "rhea sender to %s: outcomes %s" % (WAIT, done))
    time.sleep(1.5)  # every message meant to expire has (the queue's ttl is 1 s)

    c1 = node_client("rhea-consumer-wait", "route_rhea_recv.js",
                     [broker.port, WAIT, "--credit", 100, "--idle-exit", 1.0], workdir)
    c1.expect_success(20)
    check_exactly(c1, PART1_KEPT, "consumer of %s after 1.5 s" % WAIT)
    for m in messages_of(c1):
        check(not m["settled"] and m["dc"] == 0 and m["body"] == body(m["seq"]),
              "consumer of %s: unexpected delivery %s" % (WAIT, m))
        check_ttl_left(m["seq"], m["ttl"], "consumer of %s" % WAIT)
    log("part 1: of 11 messages waiting 1.5 s, a rhea consumer got exactly the 4 unexpired ones "
        "%s (ttl left: %s)" % (PART1_KEPT, [m["ttl"] for m in messages_of(c1)]))

    # Part 2: messages expiring while the only consumer is busy.
    spec = [{"body": body(s), "props": {"seq": s}, "ttl": 60000 if s % 2 == 0 else 200}
            for s in PART2]
    spec_path = write_spec(workdir, "busy", spec)
    senders = []

    def start_sender():
        senders.append(node_client("rhea-sender-busy", "route_rhea_send.js",
                                   [broker.port, BUSY, spec_path], workdir))

    try:
        h = run(BusyConsumer(broker.url(), start_sender, len(PART2_KEPT)))
    except ClientError as e:
        raise Failure("busy consumer of %s: %s" % (BUSY, e)) from None
    check(senders, "the rhea sender to %s was never started" % BUSY)
    done = [l for l in senders[0].expect_success(20) if l.get("event") == "done"]
    check(done and done[0]["outcomes"] == ["accepted"] * len(spec),
          "rhea sender to %s: outcomes %s" % (BUSY, done))
    check_eq([g[0] for g in h.got], PART2_KEPT,
             "seqs the busy consumer of %s received (odd ones expired meanwhile)" % BUSY)
    for seq, ttl, dc in h.got:
        check_eq(dc, 0, "delivery-count of seq %d" % seq)
        # The first is delivered on arrival; the others after the 1 s hold (give or take the
        # few ms between their arrivals and the first's).
        check_ttl_left(seq, ttl, "busy consumer of %s" % BUSY, 60000 if seq == PART2[0] else 59500)
    log("part 2: a consumer busy for 1 s got exactly the 6 unexpired of 12, never an expired one")

    # The dead-letter queue.
    expired = PART1_EXPIRED + PART2_EXPIRED
    dlq = python_client("proton-dlq", "route_proton_recv.py",
                        [broker.url(), DLQ, "--count", len(expired), "--linger", 1.0], workdir)
    gather([dlq], lambda: len(messages_of(dlq)) >= len(expired), 20,
           "%d dead letters in %s" % (len(expired), DLQ))
    dlq.expect_success(10)
    got = messages_of(dlq)
    seqs = [m["seq"] for m in got]
    check_eq(sorted(seqs), sorted(expired), "seqs in the dead-letter queue (sorted)")
    check_eq(len(seqs), len(set(seqs)), "dead letters without duplicates")
    for m in got:
        source = WAIT if m["seq"] < 100 else BUSY
        a = m["annotations"]
        what = "dead letter seq %d" % m["seq"]
        check_eq(a.get(REASON), "expired", "%s: %s" % (what, REASON))
        check_eq(a.get(SOURCE), source, "%s: %s" % (what, SOURCE))
        check(DESCRIPTION not in a, "%s: unexpected %s %r" % (what, DESCRIPTION, a.get(DESCRIPTION)))
        check_eq(m["body"], body(m["seq"]), "%s: body" % what)
        check_eq(m["dc"], 0, "%s: delivery-count" % what)
        check(not m["settled"], "%s: delivered pre-settled" % what)
    broker.check_alive()
    log("DLQ: exactly the %d expired messages, reason \"expired\", source %s or %s"
        % (len(expired), WAIT, BUSY))


if __name__ == "__main__":
    run_scenario(main)
