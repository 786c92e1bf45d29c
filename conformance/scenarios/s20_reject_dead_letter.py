"""Scenario 20: rejected messages go to the dead-letter queue with the consumer's description.

The queue `s20.work` is declared with `dead_letter_queue = "s20.dlq"`. Each message's
application-property `action` tells the consumer what to do with it (see
clients/route_rhea_recv.js): of every four, one is rejected with an error whose description
names the client and the message ("rhea: no <seq>" / "proton: no <seq>"), one is rejected
with no error at all, and two are accepted.

1. rhea sends 20 messages (seqs 0..19), all accepted; a rhea consumer settles them.
2. Proton sends 20 more (seqs 20..39); a Proton consumer settles them.
Each consumer gets its 20 once each, in order (a rejected message is never redelivered).
3. A rhea consumer of `s20.dlq` gets exactly the 20 rejected messages, in the order they
   were rejected, with body and application-properties unchanged and the annotations
   `x-opt-deadletter-reason` = "rejected", `x-opt-deadletter-source` = "s20.work", and
   `x-opt-deadletter-description` = the rejecting consumer's description, absent for a
   rejection without one. No accepted message is in it.
4. `s20.work` is empty: a consumer gets nothing within 1 s.

rhea 3.0.5 cannot settle consecutive deliveries with different outcomes in one go: its
`write_dispositions` (lib/session.js) starts a range at one delivery and appends the next
consecutive one without comparing their outcomes, so a frame
`disposition(first=5, last=7, rejected)` settled an accepted message as rejected (seen
with credit 5: accepted messages arrived in the DLQ, and a rejection without an error got the
previous message's description). The broker follows the wire; the rhea consumer here uses
credit 1, which puts each settlement in a batch of its own.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, gather, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402
from route_common import broker_with, check_exactly, write_spec  # noqa: E402

WORK = "s20.work"
DLQ = "s20.dlq"
PER_ROUND = 20


def plan(seq):
    """(application-properties, expected description or None, rejected?)"""
    props = {"seq": seq}
    if seq % 4 == 0:
        props.update(action="reject", why="no %d" % seq)
        client = "rhea" if seq < PER_ROUND else "proton"
        return props, "%s: no %d" % (client, seq), True
    if seq % 4 == 1:
        props.update(action="reject")
        return props, None, True
    return props, None, False


def body(seq):
    return "job %d" % seq


def consume(child, seqs, what):
    gather([child], lambda: len(messages_of(child)) >= len(seqs), 20, what)
    child.expect_success(10)
    check_exactly(child, seqs, what)
    for m in messages_of(child):
        check_eq(m["action"], plan(m["seq"])[0].get("action", "accept"), "%s: action" % what)
        check_eq(m["dc"], 0, "%s: delivery-count of seq %d" % (what, m["seq"]))


def main(workdir):
    broker = broker_with(workdir, queues=[{"name": WORK, "dead_letter_queue": DLQ}])

    # 1. rhea sends, a rhea consumer settles.
    r1 = list(range(PER_ROUND))
    spec = [{"body": body(s), "props": plan(s)[0]} for s in r1]
    sender = node_client("rhea-sender", "route_rhea_send.js",
                         [broker.port, WORK, write_spec(workdir, "round1", spec)], workdir)
    done = [l for l in sender.expect_success(20) if l.get("event") == "done"]
    check(done and done[0]["outcomes"] == ["accepted"] * len(spec), "rhea sender: %s" % done)
    # Credit 1: rhea 3.0.5 merges a settled delivery into the disposition range of the one
    # before it whatever its outcome (see the module docstring), so each delivery must be
    # settled in a frame batch of its own.
    c = node_client("rhea-consumer", "route_rhea_recv.js",
                    [broker.port, WORK, "--credit", 1, "--count", len(r1), "--linger", 1.0], workdir)
    consume(c, r1, "rhea consumer of %s" % WORK)

    # 2. Proton sends, a Proton consumer settles.
    r2 = list(range(PER_ROUND, 2 * PER_ROUND))
    try:
        send_messages(broker.url(), WORK, [Message(body=body(s), properties=plan(s)[0]) for s in r2])
    except ClientError as e:
        raise Failure("Proton sending to %s: %s" % (WORK, e)) from None
    c = python_client("proton-consumer", "route_proton_recv.py",
                      [broker.url(), WORK, "--credit", 5, "--count", len(r2), "--linger", 1.0], workdir)
    consume(c, r2, "Proton consumer of %s" % WORK)
    log("40 messages: a rhea and a Proton consumer each rejected 10 (5 with a description), "
        "accepted 10; none redelivered")

    # 3. The dead-letter queue.
    rejected = [s for s in r1 + r2 if plan(s)[2]]
    # --action accept: the dead letters still carry action=reject in their properties.
    dlq = node_client("rhea-dlq", "route_rhea_recv.js",
                      [broker.port, DLQ, "--count", len(rejected), "--linger", 1.0, "--action", "accept"],
                      workdir)
    gather([dlq], lambda: len(messages_of(dlq)) >= len(rejected), 20,
           "%d dead letters in %s" % (len(rejected), DLQ))
    dlq.expect_success(10)
    check_exactly(dlq, rejected, "dead letters in %s (rejection order)" % DLQ)
    described = 0
    for m in messages_of(dlq):
        props, description, _ = plan(m["seq"])
        what = "dead letter seq %d" % m["seq"]
        a = m["annotations"]
        check_eq(a.get("x-opt-deadletter-reason"), "rejected", "%s: x-opt-deadletter-reason" % what)
        check_eq(a.get("x-opt-deadletter-source"), WORK, "%s: x-opt-deadletter-source" % what)
        if description is None:
            check("x-opt-deadletter-description" not in a,
                  "%s: rejected without an error, yet x-opt-deadletter-description = %r"
                  % (what, a.get("x-opt-deadletter-description")))
        else:
            described += 1
            check_eq(a.get("x-opt-deadletter-description"), description,
                     "%s: x-opt-deadletter-description" % what)
        check_eq(m["body"], body(m["seq"]), "%s: body" % what)
        check_eq(m["props"], props, "%s: application-properties" % what)
    log("DLQ: exactly the %d rejected messages in order, reason \"rejected\", source %s, %d with "
        "the consumer's description (dead-letter delivery-counts %s)"
        % (len(rejected), WORK, described, sorted({m["dc"] for m in messages_of(dlq)})))

    # 4. Nothing left in the work queue.
    c = python_client("proton-after", "route_proton_recv.py",
                      [broker.url(), WORK, "--idle-exit", 1.0], workdir)
    c.expect_success(20)
    check_eq([m["seq"] for m in messages_of(c)], [], "messages left in %s" % WORK)
    broker.check_alive()
    log("%s is empty afterwards" % WORK)


if __name__ == "__main__":
    run_scenario(main)
