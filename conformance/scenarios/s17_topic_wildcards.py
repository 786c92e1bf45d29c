"""Scenario 17: a topic exchange routes by `*` and `#` patterns in the subscribers' addresses.

A topic exchange `s17.t` is declared in the broker's config. Five subscribers attach, each
binding its subscription queue with the key in its address (`#` percent-encoded as `%23`,
as RabbitMQ 4 addresses require; `*` may stay raw):

  rhea    /exchanges/s17.t/a.*.c     `*` is exactly one word (possibly empty)
  Proton  /exchanges/s17.t/a.%23     `a.#`: `a` and everything under it
  rhea    /exchanges/s17.t/%23       `#`: every key, even the empty one
  Proton  /exchanges/s17.t/a.b.c     an exact key
  rhea    /exchanges/s17.t/*         one-word keys only

Messages are then sent in three phases, each waiting for every `accepted`:
  1. a Proton sender on `/exchanges/s17.t` (no key: each message's `subject` is its key),
     four rounds of ten subjects (`a.b.c`, `a.x.c`, `a..c`, `a`, `a.b`, `a.c`, `a.b.c.d`,
     `b.b.c`, `x`, and no subject at all: the empty key);
  2. a rhea sender on `/exchanges/s17.t/a.k.c`: the address's key wins over the messages'
     subjects (`zzz`, `a.b.c`);
  3. a Proton sender on `/exchanges/s17.t/b` with subject `a.b.c`: key `b`.
Each subscriber receives exactly the messages whose key its pattern matches, once each, in
send order (the expected sets are written out below, not computed with the broker's rules).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, gather, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages  # noqa: E402
from route_common import broker_with, check_exactly, write_spec  # noqa: E402

EXCHANGE = "s17.t"
BASE = "/exchanges/" + EXCHANGE
ROUNDS = 4

# subscriber -> (client, address key)
SUBSCRIBERS = {
    "a.*.c": ("rhea", "a.*.c"),
    "a.#": ("proton", "a.%23"),
    "#": ("rhea", "%23"),
    "a.b.c": ("proton", "a.b.c"),
    "*": ("rhea", "*"),
}

# routing key -> the subscribers whose pattern matches it (None: no subject, the empty key)
MATCHES = {
    "a.b.c": {"a.*.c", "a.#", "#", "a.b.c"},
    "a.x.c": {"a.*.c", "a.#", "#"},
    "a..c": {"a.*.c", "a.#", "#"},  # the middle word is empty: still one word
    "a": {"a.#", "#", "*"},
    "a.b": {"a.#", "#"},
    "a.c": {"a.#", "#"},
    "a.b.c.d": {"a.#", "#"},
    "b.b.c": {"#"},
    "x": {"#", "*"},
    None: {"#"},
    # phases 2 and 3: the key comes from the sender's address
    "a.k.c": {"a.*.c", "a.#", "#"},
    "b": {"#", "*"},
}
SUBJECTS = ["a.b.c", "a.x.c", "a..c", "a", "a.b", "a.c", "a.b.c.d", "b.b.c", "x", None]


def main(workdir):
    broker = broker_with(workdir, exchanges=[{"name": EXCHANGE, "type": "topic"}])
    subs = {}
    for pattern, (client, key) in SUBSCRIBERS.items():
        name = "%s-sub[%s]" % (client, pattern)
        address = "%s/%s" % (BASE, key)
        if client == "rhea":
            subs[pattern] = node_client(name, "route_rhea_recv.js",
                                        [broker.port, address, "--credit", 50], workdir)
        else:
            subs[pattern] = python_client(name, "route_proton_recv.py",
                                          [broker.url(), address, "--credit", 50], workdir)
    for s in subs.values():
        s.wait_for(lambda l: l.get("event") == "ready", 20, "its receiver to attach")

    sent = []  # (seq, routing key) in send order
    # 1. Proton, no key in the address: the subject is the key.
    msgs = []
    for r in range(ROUNDS):
        for subject in SUBJECTS:
            seq = len(sent)
            sent.append((seq, subject))
            msgs.append(Message(body="m%d" % seq, subject=subject, properties={"seq": seq}))
    try:
        send_messages(broker.url(), BASE, msgs, timeout=30)
    except ClientError as e:
        raise Failure("phase 1 (Proton, keys from subjects): %s" % e) from None

    # 2. rhea, key a.k.c in the address; the subjects must not matter.
    spec = []
    for subject in ["zzz", "a.b.c", "zzz", "a.b.c", None]:
        seq = len(sent)
        sent.append((seq, "a.k.c"))
        m = {"body": "m%d" % seq, "props": {"seq": seq}}
        if subject is not None:
            m["subject"] = subject
        spec.append(m)
    sender = node_client("rhea-sender", "route_rhea_send.js",
                         [broker.port, BASE + "/a.k.c", write_spec(workdir, "phase2", spec)], workdir)
    done = [l for l in sender.expect_success(30) if l.get("event") == "done"]
    check(done, "the rhea sender reported nothing")
    check_eq(done[0]["outcomes"], ["accepted"] * len(spec), "phase 2 (rhea, key in the address) outcomes")

    # 3. Proton, key b in the address, subject a.b.c.
    msgs = []
    for _ in range(3):
        seq = len(sent)
        sent.append((seq, "b"))
        msgs.append(Message(body="m%d" % seq, subject="a.b.c", properties={"seq": seq}))
    try:
        send_messages(broker.url(), BASE + "/b", msgs, timeout=30)
    except ClientError as e:
        raise Failure("phase 3 (Proton, key b in the address): %s" % e) from None

    expected = {p: [seq for seq, key in sent if p in MATCHES[key]] for p in SUBSCRIBERS}
    gather(list(subs.values()),
           lambda: all(len(messages_of(subs[p])) >= len(expected[p]) for p in SUBSCRIBERS),
           30, "every subscriber's messages")
    time.sleep(1.0)  # anything a subscriber should not get would arrive within this second
    for s in subs.values():
        s.stop()
    counts = {}
    for p, s in subs.items():
        check_exactly(s, expected[p], "subscriber %s" % SUBSCRIBERS[p][1])
        got = messages_of(s)
        check(all(m["body"] == "m%d" % m["seq"] for m in got), "%s: bodies changed" % s.name)
        check(not any(m["dc"] for m in got), "%s: delivery-count != 0" % s.name)
        counts[p] = len(got)
    broker.check_alive()
    log("%d messages (%d keys from subjects, 2 from sender addresses); each subscriber got exactly "
        "its matching set, in order: %s" % (len(sent), len(SUBJECTS), counts))


if __name__ == "__main__":
    run_scenario(main)
