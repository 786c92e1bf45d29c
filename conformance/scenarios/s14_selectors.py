"""Scenario 14: selector filters from both clients.

200 messages with application-properties color (red, blue, green in turn) and size (0..199)
are queued. A Proton receiver with a `Selector` (the symbolic descriptor
apache.org:selector-filter:string) for "color = 'red' AND size > 100" gets exactly those, in
order; a rhea receiver with filter.selector (the numeric descriptor 0x468C00000004) for
"color = 'blue'" gets exactly the blue ones, and sees its filter echoed in the attach; an
unfiltered Proton receiver then gets everything else, in order.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, check, check_eq, gather, log, messages_of, node_client,  # noqa: E402
                     run_scenario)
from proton import Message  # noqa: E402
from proton.reactor import Selector  # noqa: E402
from proton_util import receive_messages, send_messages  # noqa: E402

ADDRESS = "s14.paint"
N = 200
COLORS = ["red", "blue", "green"]


def main(workdir):
    broker = Broker(workdir)
    messages = [Message(body="m%d" % i, properties={"color": COLORS[i % 3], "size": i, "seq": i})
                for i in range(N)]
    send_messages(broker.url(), ADDRESS, messages)
    red = [i for i in range(N) if COLORS[i % 3] == "red" and i > 100]
    blue = [i for i in range(N) if COLORS[i % 3] == "blue"]
    rest = [i for i in range(N) if i not in red and i not in blue]

    got = receive_messages(broker.url(), ADDRESS, len(red), timeout=30, linger=0.5,
                           options=Selector("color = 'red' AND size > 100"))
    check_eq([m.properties["seq"] for m in got], red, "Proton's selected messages")
    log("Proton, symbolic descriptor: %d of %d selected, in order" % (len(got), N))

    b = node_client("rhea-blue", "rhea_consumer.js",
                    [broker.port, ADDRESS, "--credit", 50, "--selector", "color = 'blue'"], workdir)
    gather([b], lambda: len(messages_of(b)) >= len(blue), 30, "rhea's %d blue messages" % len(blue))
    ready = [l for l in b.received if l.get("event") == "ready"]
    check(ready and ready[0].get("filter"), "the broker did not echo rhea's selector filter")
    b.stop()
    check_eq([m["seq"] for m in messages_of(b)], blue, "rhea's selected messages")
    log("rhea, numeric descriptor: %d selected, filter echoed" % len(blue))

    got = receive_messages(broker.url(), ADDRESS, len(rest), timeout=30, linger=0.5)
    check_eq([m.properties["seq"] for m in got], rest, "the unfiltered receiver's messages")
    log("unfiltered receiver: the other %d, in order" % len(rest))


if __name__ == "__main__":
    run_scenario(main)
