"""Scenario 2: four competing consumers, two Proton and two rhea processes, on one queue.

Together they receive each of N messages exactly once: no duplicates, none missing, and each
consumer gets a share.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, gather, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402

N = 4000
ADDRESS = "s02.work"


def main(workdir):
    broker = Broker(workdir)
    consumers = [
        python_client("proton-1", "proton_consumer.py", [broker.url(), ADDRESS, "--credit", 20], workdir),
        python_client("proton-2", "proton_consumer.py", [broker.url(), ADDRESS, "--credit", 20], workdir),
        node_client("rhea-1", "rhea_consumer.js", [broker.port, ADDRESS, "--credit", 20], workdir),
        node_client("rhea-2", "rhea_consumer.js", [broker.port, ADDRESS, "--credit", 20], workdir),
    ]
    for c in consumers:
        c.wait_for(lambda l: l.get("event") == "ready", 20, "its receiver to attach")

    msgs = [Message(body="work %d" % i, properties={"seq": i}) for i in range(N)]
    try:
        send_messages(broker.url(), ADDRESS, msgs, timeout=60)
    except ClientError as e:
        raise Failure("sending %d messages: %s" % (N, e)) from None

    def total():
        return sum(len(messages_of(c)) for c in consumers)

    gather(consumers, lambda: total() >= N, 60, "%d messages across the consumers" % N)
    time.sleep(1.0)  # time for a duplicate to show up
    gather(consumers, lambda: True, 1, "late messages")
    for c in consumers:
        c.stop()
    gather(consumers, lambda: True, 1, "late messages")

    seqs = [m["seq"] for c in consumers for m in messages_of(c)]
    shares = {c.name: len(messages_of(c)) for c in consumers}
    dups = len(seqs) - len(set(seqs))
    missing = sorted(set(range(N)) - set(seqs))
    check(dups == 0, "%d duplicate deliveries (shares %s)" % (dups, shares))
    check(not missing, "%d messages missing, first %s" % (len(missing), missing[:10]))
    check(len(seqs) == N, "received %d messages, expected exactly %d" % (len(seqs), N))
    for c in consumers:
        check(shares[c.name] > 0, "%s received nothing (shares %s)" % (c.name, shares))
        bad = [m for m in messages_of(c) if m["body"] != "work %d" % m["seq"]]
        check(not bad, "%s: body does not match seq: %s" % (c.name, bad[:3]))
    broker.check_alive()
    log("%d messages received exactly once by 4 competing consumers: %s" % (N, shares))


if __name__ == "__main__":
    run_scenario(main)
