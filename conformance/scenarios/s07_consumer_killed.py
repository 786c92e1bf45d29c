"""Scenario 7: a consumer killed mid-stream.

N messages are queued. Consumer A (a Proton process) accepts the first 10, then takes 40 more
credit and holds everything it gets, unsettled; once it holds at least 20 it is SIGKILLed.
Consumer B (a rhea process) then receives everything else: exactly N - 10 distinct messages,
the ones A held with delivery-count >= 1 (the broker counts the failed delivery), the ones A
could never have had (beyond its 50 credits) with delivery-count 0. Accepted + B = all N,
no duplicates.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, check_eq, gather, log, messages_of,  # noqa: E402
                     node_client, python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402

N = 500
ADDRESS = "s07.killed"
FIRST = 10
HOLD_CREDIT = 40


def main(workdir):
    broker = Broker(workdir)
    try:
        send_messages(broker.url(), ADDRESS,
                      [Message(body="job %d" % i, properties={"seq": i}) for i in range(N)])
    except ClientError as e:
        raise Failure("sending: %s" % e) from None

    a = python_client("consumer-A", "proton_consumer.py",
                      [broker.url(), ADDRESS, "--accept-first", FIRST, "--credit", HOLD_CREDIT], workdir)
    held = lambda: [m for m in messages_of(a) if m["held"]]  # noqa: E731
    gather([a], lambda: len(held()) >= 20, 20, "consumer A to hold 20 unsettled messages")
    time.sleep(0.2)  # let the rest of its credit arrive, so A holds a full window
    a.signal(signal.SIGKILL)
    a.kill()
    a_accepted = [m["seq"] for m in messages_of(a) if not m["held"]]
    a_held = [m["seq"] for m in held()]
    check_eq(a_accepted, list(range(FIRST)), "messages A accepted")
    check(all(m["dc"] == 0 for m in messages_of(a)), "A saw a non-zero delivery-count")

    b = node_client("consumer-B", "rhea_consumer.js", [broker.port, ADDRESS, "--credit", 50], workdir)
    gather([b], lambda: len(messages_of(b)) >= N - FIRST, 30,
           "consumer B to receive the %d remaining messages" % (N - FIRST))
    time.sleep(1.0)  # a duplicate would arrive within this second
    b.stop()
    got = messages_of(b)
    seqs = [m["seq"] for m in got]
    dups = len(seqs) - len(set(seqs))
    check(dups == 0, "B received %d duplicates" % dups)
    check_eq(len(seqs), N - FIRST, "messages B received")
    check_eq(sorted(seqs + a_accepted), list(range(N)), "A's accepted + B's = every message once")
    dc = {m["seq"]: m["dc"] for m in got}
    bad_held = [(s, dc.get(s)) for s in a_held if not dc.get(s, 0) >= 1]
    check(not bad_held, "messages A held came back without delivery-count >= 1: %s" % bad_held[:10])
    beyond = FIRST + HOLD_CREDIT
    bad_fresh = [(s, dc[s]) for s in seqs if s >= beyond and dc[s] != 0]
    check(not bad_fresh, "messages A never had came with delivery-count != 0: %s" % bad_fresh[:10])
    bad_body = [m for m in got if m["body"] != "job %d" % m["seq"]]
    check(not bad_body, "bodies changed: %s" % bad_body[:3])
    broker.check_alive()
    log("A accepted %d, held %d unsettled, SIGKILLed; B received the other %d exactly once, "
        "the %d held ones with delivery-count %s"
        % (len(a_accepted), len(a_held), len(seqs), len(a_held),
           sorted({dc[s] for s in a_held})))


if __name__ == "__main__":
    run_scenario(main)
