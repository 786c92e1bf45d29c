"""Scenario 21: a message that failed max_delivery_count deliveries goes to the dead-letter queue.

Two queues are declared with `max_delivery_count = 3` and `dead_letter_queue = "s21.dlq"`:
`s21.rhea`, consumed by rhea, and `s21.proton`, consumed by Proton. Each gets four messages
(sent by the other client), whose application-property `action` tells the consumer what to
do every time it receives them:

  seq b      modify-failed   settled modified(delivery-failed = true)
  seq b + 1  accept
  seq b + 2  detach          the consumer closes its link without settling it (the broker
                             must count that as a failed delivery), then attaches again
  seq b + 3  accept

Each consumer (credit 1, so it holds one message at a time) gets exactly 8 deliveries: b and
b + 2 three times each, with delivery-counts 0, 1, 2 in that order, b + 1 and b + 3 once with
delivery-count 0, and nothing more within 1 s: after the third failed delivery the message is
not offered again. A Proton consumer of `s21.dlq` then gets exactly those four messages (b and
b + 2 of each queue), each once, with `x-opt-deadletter-reason` = "max-delivery-count",
`x-opt-deadletter-source` = their queue and an `x-opt-deadletter-description`, body and
application-properties unchanged.

The order across messages is checked for rhea only (b, b, b, b+1, b+2, b+2, b+2, b+3): Proton
writes a receiver's flow before its dispositions in the same output, so its next credit
reaches the broker before the modified outcome, and the broker rightly hands out b + 1 before
b comes back.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, gather, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402
from route_common import broker_with, write_spec  # noqa: E402

DLQ = "s21.dlq"
POLICY = {"max_delivery_count": 3, "dead_letter_queue": DLQ}
QUEUES = {"s21.rhea": 0, "s21.proton": 10}  # queue -> first seq
ACTIONS = ["modify-failed", "accept", "detach", "accept"]


def body(seq):
    return "fragile %d" % seq


def props(seq, base):
    return {"seq": seq, "action": ACTIONS[seq - base]}


def main(workdir):
    broker = broker_with(workdir, queues=[dict(name=q, **POLICY) for q in QUEUES])

    # s21.rhea: sent by Proton.
    b = QUEUES["s21.rhea"]
    try:
        send_messages(broker.url(), "s21.rhea",
                      [Message(body=body(s), properties=props(s, b)) for s in range(b, b + 4)])
    except ClientError as e:
        raise Failure("Proton sending to s21.rhea: %s" % e) from None
    # s21.proton: sent by rhea.
    b = QUEUES["s21.proton"]
    spec = [{"body": body(s), "props": props(s, b)} for s in range(b, b + 4)]
    sender = node_client("rhea-sender", "route_rhea_send.js",
                         [broker.port, "s21.proton", write_spec(workdir, "proton", spec)], workdir)
    done = [l for l in sender.expect_success(20) if l.get("event") == "done"]
    check(done and done[0]["outcomes"] == ["accepted"] * 4, "rhea sender to s21.proton: %s" % done)

    # Credit 1 also keeps rhea from merging consecutive settlements with different outcomes
    # into one disposition (see scenario 20).
    deliveries = 8
    consumers = {
        "s21.rhea": node_client("rhea-consumer", "route_rhea_recv.js",
                                [broker.port, "s21.rhea", "--credit", 1, "--count", deliveries,
                                 "--linger", 1.0], workdir),
        "s21.proton": python_client("proton-consumer", "route_proton_recv.py",
                                    [broker.url(), "s21.proton", "--credit", 1, "--count", deliveries,
                                     "--linger", 1.0], workdir),
    }
    gather(list(consumers.values()),
           lambda: all(len(messages_of(c)) >= deliveries for c in consumers.values()), 30,
           "%d deliveries at each consumer" % deliveries)
    for q, c in consumers.items():
        c.expect_success(10)
        b = QUEUES[q]
        got = [(m["seq"], m["dc"]) for m in messages_of(c)]
        per_seq = {s: [dc for seq, dc in got if seq == s] for s in sorted({seq for seq, _ in got})}
        check_eq(per_seq, {b: [0, 1, 2], b + 1: [0], b + 2: [0, 1, 2], b + 3: [0]},
                 "%s: delivery-counts of each message's deliveries from %s (all deliveries: %s)"
                 % (c.name, q, got))
        if q == "s21.rhea":
            check_eq(got, [(b, 0), (b, 1), (b, 2), (b + 1, 0), (b + 2, 0), (b + 2, 1), (b + 2, 2),
                           (b + 3, 0)], "%s: (seq, delivery-count) of every delivery" % c.name)
        attached = [l for l in c.received if l.get("event") == "ready"]
        check_eq(len(attached), 4, "%s: attaches (the first, and one after each of 3 detaches)" % c.name)
    log("rhea and Proton consumers each saw a modified(delivery-failed) message and a message "
        "whose link detached unsettled exactly 3 times, delivery-count 0, 1, 2, then never again")

    expected = {q: [b, b + 2] for q, b in QUEUES.items()}
    n = sum(len(v) for v in expected.values())
    dlq = python_client("proton-dlq", "route_proton_recv.py",
                        [broker.url(), DLQ, "--count", n, "--linger", 1.0, "--action", "accept"],
                        workdir)
    gather([dlq], lambda: len(messages_of(dlq)) >= n, 20, "%d dead letters in %s" % (n, DLQ))
    dlq.expect_success(10)
    got = messages_of(dlq)
    for q, seqs in expected.items():
        check_eq(sorted(m["seq"] for m in got if m["annotations"].get("x-opt-deadletter-source") == q),
                 seqs, "dead letters with x-opt-deadletter-source %s" % q)
    check_eq(len(got), n, "dead letters in %s" % DLQ)
    descriptions = set()
    for m in got:
        q = "s21.rhea" if m["seq"] < QUEUES["s21.proton"] else "s21.proton"
        what = "dead letter seq %d" % m["seq"]
        a = m["annotations"]
        check_eq(a.get("x-opt-deadletter-reason"), "max-delivery-count", "%s: x-opt-deadletter-reason" % what)
        check_eq(a.get("x-opt-deadletter-source"), q, "%s: x-opt-deadletter-source" % what)
        d = a.get("x-opt-deadletter-description")
        check(isinstance(d, str) and d, "%s: x-opt-deadletter-description %r" % (what, d))
        descriptions.add(d)
        check_eq(m["body"], body(m["seq"]), "%s: body" % what)
        check_eq(m["props"], props(m["seq"], QUEUES[q]), "%s: application-properties" % what)
    broker.check_alive()
    log("DLQ: exactly those 4 messages, reason \"max-delivery-count\" (description %s; "
        "delivery-counts %s)" % (sorted(descriptions), [m["dc"] for m in got]))


if __name__ == "__main__":
    run_scenario(main)
