"""Scenario 22: messages queued before any consumer are delivered highest priority first, FIFO
within a level.

Thirty messages with mixed `header.priority` are sent to each of two queues, in three batches,
each batch accepted before the next starts (so arrival order is send order):
  1. Proton, 15 messages: priorities 0..9 in a scrambled order, 10 and 255 (above 9: counted as
     9), and repeats;
  2. rhea, 8 messages: some without any priority (rhea sends no header field: counted as 4),
     9, 0, 12, 5;
  3. Proton, 7 messages: one with Proton's default priority (4, left out of the header), 7, 9,
     0, 4, 200, 1.
No consumer is attached while they are sent. Then a Proton consumer (credit 100) takes
`s22.a` and a rhea consumer (credit 3, so many flows) takes `s22.b`. Each receives all 30
exactly once, ordered by level (priority, absent = 4, above 9 = 9) from 9 down to 0, and within
a level in arrival order; each message's header still carries the priority it was sent with
(255 stays 255: the level is only the broker's ordering; Proton leaves its default, 4, out of
the header, so rhea reads no priority on those).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, check_eq, gather, log, messages_of,  # noqa: E402
                     node_client, python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402
from route_common import check_exactly, write_spec  # noqa: E402

QUEUES = ["s22.a", "s22.b"]
BATCH1 = [0, 9, 4, 7, 2, 10, 5, 255, 1, 3, 6, 8, 4, 9, 0]  # Proton
BATCH2 = [None, 9, None, 0, 12, None, 5, None]  # rhea; None: no priority in the header
BATCH3 = [None, 7, 9, 0, 4, 200, 1]  # Proton; None: Proton's default (4)
PRIORITIES = BATCH1 + BATCH2 + BATCH3


def level(p):
    return 4 if p is None else min(p, 9)


def body(seq):
    return "p%d" % seq


def proton_batch(broker, queue, first, priorities):
    msgs = []
    for i, p in enumerate(priorities):
        m = Message(body=body(first + i), properties={"seq": first + i})
        if p is not None:
            m.priority = p
        msgs.append(m)
    try:
        send_messages(broker.url(), queue, msgs, timeout=20)
    except ClientError as e:
        raise Failure("Proton sending to %s: %s" % (queue, e)) from None


def main(workdir):
    broker = Broker(workdir)
    for q in QUEUES:
        proton_batch(broker, q, 0, BATCH1)
        first = len(BATCH1)
        spec = []
        for i, p in enumerate(BATCH2):
            m = {"body": body(first + i), "props": {"seq": first + i}}
            if p is not None:
                m["priority"] = p
            spec.append(m)
        sender = node_client("rhea-sender-%s" % q, "route_rhea_send.js",
                             [broker.port, q, write_spec(workdir, q, spec)], workdir)
        done = [l for l in sender.expect_success(20) if l.get("event") == "done"]
        check(done and done[0]["outcomes"] == ["accepted"] * len(spec),
              "rhea sender to %s: %s" % (q, done))
        proton_batch(broker, q, len(BATCH1) + len(BATCH2), BATCH3)

    n = len(PRIORITIES)
    expected = sorted(range(n), key=lambda s: (-level(PRIORITIES[s]), s))
    consumers = {
        "s22.a": python_client("proton-consumer", "route_proton_recv.py",
                               [broker.url(), "s22.a", "--credit", 100, "--count", n, "--linger", 1.0],
                               workdir),
        "s22.b": node_client("rhea-consumer", "route_rhea_recv.js",
                             [broker.port, "s22.b", "--credit", 3, "--count", n, "--linger", 1.0],
                             workdir),
    }
    gather(list(consumers.values()), lambda: all(len(messages_of(c)) >= n for c in consumers.values()),
           20, "%d messages at each consumer" % n)
    for q, c in consumers.items():
        c.expect_success(10)
        check_exactly(c, expected, "%s on %s: order by level, then arrival" % (c.name, q))
        for m in messages_of(c):
            sent = PRIORITIES[m["seq"]]
            if q == "s22.a":
                want = 4 if sent is None else sent  # Proton reports an absent priority as 4
            elif sent == 4 and not len(BATCH1) <= m["seq"] < len(BATCH1) + len(BATCH2):
                want = None  # Proton leaves its default, 4, out of the header; rhea says null
            else:
                want = sent  # rhea reports an absent priority as null
            check_eq(m["priority"], want, "%s: priority of seq %d as delivered" % (c.name, m["seq"]))
            check_eq(m["body"], body(m["seq"]), "%s: body of seq %d" % (c.name, m["seq"]))
            check_eq(m["dc"], 0, "%s: delivery-count of seq %d" % (c.name, m["seq"]))
    broker.check_alive()
    log("%d messages (priorities %s) delivered to a Proton and a rhea consumer as levels %s"
        % (n, PRIORITIES, [level(PRIORITIES[s]) for s in expected]))


if __name__ == "__main__":
    run_scenario(main)
