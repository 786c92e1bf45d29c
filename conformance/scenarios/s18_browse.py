"""Scenario 18: browsers (source distribution-mode `copy`) read a queue without taking from it.

1. A rhea browser (credit 10) attaches to the empty queue `s18.shelf` and sees
   distribution-mode `copy` echoed in the broker's attach.
2. A Proton producer sends N messages to the queue (all accepted); the rhea browser reads
   them as they arrive.
3. A Proton browser (credit 1000) attaches afterwards and reads the backlog.
   Each browser sees all N, in order, once each, pre-settled, with delivery-count 0.
4. The queue still holds all N: a rhea consumer (credit 20, accepting) receives all N, in
   order, unsettled, with delivery-count 0 (a browsed copy is not a delivery attempt).
5. The queue is then empty: a Proton browser attached afterwards sees nothing within 1 s.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, check_eq, gather, log, messages_of,  # noqa: E402
                     node_client, python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402
from route_common import check_exactly  # noqa: E402

N = 300
QUEUE = "s18.shelf"


def check_browsed(child, what):
    check_exactly(child, range(N), what)
    got = messages_of(child)
    check(all(m["settled"] for m in got), "%s: browsed copies must be pre-settled" % what)
    check(not any(m["dc"] for m in got), "%s: delivery-count != 0 on a browsed copy" % what)
    check(all(m["body"] == "item %d" % m["seq"] for m in got), "%s: bodies changed" % what)


def main(workdir):
    broker = Broker(workdir)
    b1 = node_client("rhea-browser", "route_rhea_recv.js",
                     [broker.port, QUEUE, "--browse", "--credit", 10, "--count", N, "--linger", 1.0],
                     workdir)
    ready = b1.wait_for(lambda l: l.get("event") == "ready", 20, "the browser to attach")
    check_eq(ready.get("distribution_mode"), "copy", "distribution-mode in the broker's attach")

    msgs = [Message(body="item %d" % i, properties={"seq": i}) for i in range(N)]
    try:
        send_messages(broker.url(), QUEUE, msgs, timeout=30)
    except ClientError as e:
        raise Failure("sending %d messages: %s" % (N, e)) from None

    b2 = python_client("proton-browser", "route_proton_recv.py",
                       [broker.url(), QUEUE, "--browse", "--credit", 1000, "--count", N,
                        "--linger", 1.0], workdir)
    ready = b2.wait_for(lambda l: l.get("event") == "ready", 20, "the browser to attach")
    check_eq(ready.get("distribution_mode"), "copy", "distribution-mode in the broker's attach (Proton)")
    gather([b1, b2], lambda: len(messages_of(b1)) >= N and len(messages_of(b2)) >= N, 30,
           "%d browsed messages at each browser" % N)
    b1.expect_success(10)
    b2.expect_success(10)
    check_browsed(b1, "rhea browser (attached before the messages)")
    check_browsed(b2, "Proton browser (attached after)")
    log("2 browsers (rhea live, Proton on the backlog) each saw all %d, in order, pre-settled" % N)

    c = node_client("rhea-consumer", "route_rhea_recv.js",
                    [broker.port, QUEUE, "--credit", 20, "--count", N, "--linger", 1.0], workdir)
    gather([c], lambda: len(messages_of(c)) >= N, 30, "the consumer's %d messages" % N)
    c.expect_success(10)
    check_exactly(c, range(N), "consumer after browsing")
    got = messages_of(c)
    check(not any(m["settled"] for m in got), "consumer: deliveries were pre-settled")
    bad = [(m["seq"], m["dc"]) for m in got if m["dc"] != 0]
    check(not bad, "consumer: delivery-count changed by browsing: %s" % bad[:5])
    log("then a consumer received all %d, in order, delivery-count 0" % N)

    b3 = python_client("proton-browser-after", "route_proton_recv.py",
                       [broker.url(), QUEUE, "--browse", "--idle-exit", 1.0], workdir)
    b3.expect_success(20)
    check_eq(len(messages_of(b3)), 0, "messages a browser sees once the queue was consumed")
    broker.check_alive()
    log("and a browser attached afterwards sees an empty queue")


if __name__ == "__main__":
    run_scenario(main)
