"""Scenario 8: a consumer frozen with SIGSTOP.

The broker runs with `[connection] dead_peer_timeout = "4s"` (it advertises an idle-time-out
of 2 s). Consumer A (a Proton process) takes 50 credits and holds its 50 messages unsettled,
then is frozen with SIGSTOP, so it sends nothing more, not even heartbeats. Consumer B (Proton)
gets the other messages at once and then waits, idle but heart-beating, so it must not be
dropped. After the dead-peer timeout the broker closes A's connection and A's 50 messages go
to B with delivery-count >= 1: B ends with all N exactly once. A is resumed and killed after.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, check_eq, gather, log, messages_of,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402

N = 200
HELD = 50
ADDRESS = "s08.frozen"
DEAD_PEER = 4.0


def main(workdir):
    broker = Broker(workdir, connection={"dead_peer_timeout": "4s"})
    try:
        send_messages(broker.url(), ADDRESS,
                      [Message(body="job %d" % i, properties={"seq": i}) for i in range(N)])
    except ClientError as e:
        raise Failure("sending: %s" % e) from None

    a = python_client("consumer-A", "proton_consumer.py",
                      [broker.url(), ADDRESS, "--accept-first", 0, "--credit", HELD], workdir)
    gather([a], lambda: len(messages_of(a)) >= HELD, 20, "consumer A to hold %d messages" % HELD)
    a.signal(signal.SIGSTOP)
    stopped_at = time.time()
    a_held = [m["seq"] for m in messages_of(a)]
    check_eq(sorted(a_held), list(range(HELD)), "messages A holds")

    b = python_client("consumer-B", "proton_consumer.py", [broker.url(), ADDRESS, "--credit", 20], workdir)
    gather([b], lambda: len(messages_of(b)) >= N - HELD, 20,
           "consumer B to receive the %d messages A does not hold" % (N - HELD))
    gather([b], lambda: len(messages_of(b)) >= N, DEAD_PEER + 11,
           "A's %d held messages to reach B after the dead-peer timeout" % HELD)
    time.sleep(1.0)  # a duplicate would arrive within this second
    b.stop()
    a.signal(signal.SIGCONT)
    a.kill()

    got = messages_of(b)
    seqs = [m["seq"] for m in got]
    check(len(seqs) == len(set(seqs)), "B received %d duplicates" % (len(seqs) - len(set(seqs))))
    check_eq(sorted(seqs), list(range(N)), "messages B received (every one exactly once)")
    by_seq = {m["seq"]: m for m in got}
    late = [by_seq[s] for s in a_held]
    bad = [(m["seq"], m["dc"]) for m in late if m["dc"] < 1]
    check(not bad, "A's messages came back with delivery-count 0: %s" % bad[:10])
    fresh = [(m["seq"], m["dc"]) for m in got if m["seq"] >= HELD and m["dc"] != 0]
    check(not fresh, "messages A never had came with delivery-count != 0: %s" % fresh[:10])
    # A heart-beats every second (half the broker's advertised 2 s) until it is frozen, so the
    # broker last heard from it at most about 1 s before SIGSTOP.
    after = min(m["t"] for m in late) - stopped_at
    check(after >= DEAD_PEER - 1.5,
          "A's messages moved %.1fs after SIGSTOP, before the %.0fs dead-peer timeout" % (after, DEAD_PEER))
    broker.check_alive()
    log("A froze holding %d; B got the other %d at once, and A's %d %.1fs after SIGSTOP "
        "(dead_peer_timeout 4s) with delivery-count %s; B, idle meanwhile, stayed connected"
        % (HELD, N - HELD, HELD, after, sorted({m["dc"] for m in late})))


if __name__ == "__main__":
    run_scenario(main)
