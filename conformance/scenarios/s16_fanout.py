"""Scenario 16: a fanout exchange gives every subscriber its own copy of every message.

A fanout exchange `s16.fan` is declared in the broker's config. Three subscribers attach to
`/exchanges/s16.fan`: two rhea processes (credit 10 and 500) and one Proton process
(credit 100); each gets a subscription queue of its own. A Proton producer then sends 1,000
messages to `/exchanges/s16.fan`, unsettled, each with a different `subject` (a fanout
ignores routing keys), and every one is accepted. Each subscriber receives all 1,000, in send
order, exactly once, unsettled, with delivery-count 0 and the body it was sent with.

When the subscribers have detached, their subscription queues are gone with their links: a
message sent to the exchange then reaches no queue and is `released` (the exchange's
default `unroutable` outcome).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, gather, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages, send_outcomes  # noqa: E402
from route_common import broker_with, check_exactly  # noqa: E402

N = 1000
EXCHANGE = "s16.fan"
ADDRESS = "/exchanges/" + EXCHANGE


def main(workdir):
    broker = broker_with(workdir, exchanges=[{"name": EXCHANGE, "type": "fanout"}])
    subs = [
        node_client("rhea-sub-1", "route_rhea_recv.js",
                    [broker.port, ADDRESS, "--credit", 10, "--count", N, "--linger", 1.0], workdir),
        node_client("rhea-sub-2", "route_rhea_recv.js",
                    [broker.port, ADDRESS, "--credit", 500, "--count", N, "--linger", 1.0], workdir),
        python_client("proton-sub", "route_proton_recv.py",
                      [broker.url(), ADDRESS, "--credit", 100, "--count", N, "--linger", 1.0], workdir),
    ]
    for s in subs:
        s.wait_for(lambda l: l.get("event") == "ready", 20, "its receiver to attach")

    msgs = [Message(body="fan %d" % i, subject="key.%d" % (i % 7), properties={"seq": i})
            for i in range(N)]
    try:
        h = send_messages(broker.url(), ADDRESS, msgs, timeout=30)
    except ClientError as e:
        raise Failure("sending %d messages to %s: %s" % (N, ADDRESS, e)) from None
    check_eq(h.accepted, N, "messages accepted by the exchange")

    gather(subs, lambda: all(len(messages_of(s)) >= N for s in subs), 30,
           "%d messages at each of the 3 subscribers" % N)
    for s in subs:
        s.expect_success(10)  # each exits 1 s after its N-th message: extras would show
    for s in subs:
        check_exactly(s, range(N), s.name)
        got = messages_of(s)
        bad = [m for m in got if m["body"] != "fan %d" % m["seq"]]
        check(not bad, "%s: bodies changed: %s" % (s.name, bad[:3]))
        check(not any(m["settled"] for m in got), "%s: deliveries were pre-settled" % s.name)
        bad_dc = [(m["seq"], m["dc"]) for m in got if m["dc"] != 0]
        check(not bad_dc, "%s: delivery-count != 0: %s" % (s.name, bad_dc[:5]))
    log("fanout: %d messages accepted; each of 3 subscribers (rhea ×2, Proton) got all %d, "
        "in order, once each" % (N, N))

    try:
        outcomes = send_outcomes(broker.url(), ADDRESS, [Message(body="nobody", properties={"seq": N})])
    except ClientError as e:
        raise Failure("sending to the exchange without subscribers: %s" % e) from None
    check_eq(outcomes, ["released"],
             "outcome of a message to the fanout once every subscriber detached (unroutable)")
    broker.check_alive()
    log("after the subscribers detached: a message to the exchange is released (no queue left)")


if __name__ == "__main__":
    run_scenario(main)
