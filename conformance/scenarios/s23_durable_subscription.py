"""Scenario 23: a durable subscription misses nothing while its subscriber is away, across a
broker restart; closing the link ends it.

A topic exchange `s23.t` is declared in config. Two durable subscribers, each with a fixed
container-id and the same link name `s23-sub` (the identity is the pair, so they do not
clash):

- rhea: `open_receiver({name, source: {address: "/exchanges/s23.t/orders.%23", durable: 2,
  expiry_policy: "never"}})`: messages with subject `orders.*` (the even seqs);
- Proton: `create_receiver(conn, "s23.t", name=..., options=DurableSubscription())`: the bare
  name of the declared exchange, every message.

For each way of stopping the broker (SIGTERM, then kill -9 in a second round, each on a data
dir of its own):

1. both attach; the attach reply echoes durable = unsettled-state (2), expiry-policy never.
   While they are attached, a second rhea and a second Proton receiver with the same
   container-id and link name are refused: null source in the attach reply, then a detach
   with `amqp:resource-locked` (and the refusal does not end the subscription: step 2 still
   reaches it);
2. Proton sends seqs 0-9 (durable). rhea gets 0, 2, 4, 6, 8 and leaves 8 unsettled; Proton
   gets 0-9 and leaves 8 and 9 unsettled. Both end their links with detach (closed=false),
   which the broker answers with closed=false;
3. while they are away, rhea sends seqs 10-29 (durable): every one is accepted (a released
   one would mean the subscriptions went with their links);
4. the broker is stopped (SIGTERM: exit 0; or SIGKILL) and a new one starts on the same data
   dir;
5. both re-attach with the same identity; rhea now with a selector `kind = 'keep'`. Once
   they are attached, Proton sends seqs 30-39 (half of them `kind = 'keep'`). rhea gets
   exactly 8 (delivery-count 1: unsettled at detach), 10, 12 … 28 (delivery-count 0, all
   of them although half do not match the new selector: they were queued before it), then
   only 32 and 36 of the new ones (even and `keep`); Proton gets exactly 8 and 9
   (delivery-count 1), 10-29, then 30-39 (delivery-count 0): in order, once each;
6. rhea detaches again; a rhea receiver with the same identity and a *null* source (how a
   JMS client finds its subscription to unsubscribe) gets the stored source back in the
   attach reply (address, durable, expiry-policy and the selector), receives nothing, and
   closes its link (closed=true). Proton closes its link (closed=true);
7. both subscriptions have ended: seq 40 (subject `orders.new`, which both would take) sent
   to the exchange is `released` (it reached no queue);
8. receivers with the same identities attach again (new subscriptions): they get only what
   is sent afterwards (seqs 41-44: rhea 42 and 44, Proton 41-44), nothing older.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, kill_process, log, messages_of,  # noqa: E402
                     node_client, python_client, run_scenario, stop_process)
from proton import Message  # noqa: E402
from proton_util import ClientError, send_messages, send_outcomes  # noqa: E402
from route_common import broker_with, write_spec  # noqa: E402

EXCHANGE = "s23.t"
PUBLISH = "/exchanges/" + EXCHANGE
RHEA_ADDR = "/exchanges/s23.t/orders.%23"  # orders.#
PROTON_ADDR = EXCHANGE  # a bare name that is a declared exchange
LINK = "s23-sub"
SELECTOR = "kind = 'keep'"
LINGER = 0.5  # seconds a subscriber waits for extras after its last expected message

_brokers = []


def subject(seq):
    return "orders.new" if seq % 2 == 0 else "audit.log"


def kind(seq):
    return "keep" if seq % 4 in (0, 1) else "drop"


def body(how, seq):
    return "s23 %s %d" % (how, seq)


def proton_msgs(how, seqs):
    return [Message(body=body(how, s), subject=subject(s), durable=True,
                    properties={"seq": s, "kind": kind(s)}) for s in seqs]


def rhea_spec(how, seqs):
    return [{"body": body(how, s), "subject": subject(s), "durable": True,
             "props": {"seq": s, "kind": kind(s)}} for s in seqs]


def start_broker(base, data_dir, n):
    d = os.path.join(base, "broker%d" % n)
    os.makedirs(d)
    b = broker_with(d, exchanges=[{"name": EXCHANGE, "type": "topic"}],
                    broker={"data_dir": data_dir})
    _brokers.append(("broker %d" % n, b))
    return b


class Subs:
    """Starts the durable subscriber processes of one round."""

    def __init__(self, workdir, how):
        self.workdir = workdir
        self.how = how
        self.rhea_id = "s23-rhea-%s" % how
        self.proton_id = "s23-proton-%s" % how

    def rhea(self, broker, label, address, *opts):
        return node_client("rhea-%s-%s" % (label, self.how), "sub_rhea_durable.js",
                           [broker.port, address, "--container", self.rhea_id, "--name", LINK,
                            "--linger", LINGER] + list(opts), self.workdir)

    def proton(self, broker, label, address, *opts):
        return python_client("proton-%s-%s" % (label, self.how), "sub_proton_durable.py",
                             [broker.url(), address, "--container", self.proton_id, "--name", LINK,
                              "--linger", LINGER] + list(opts), self.workdir)


def ready(child):
    return child.wait_for(lambda l: l.get("event") == "ready", 20, "its attach reply")


def ended(lines):
    e = [l for l in lines if l.get("event") == "ended"]
    return e[0] if e else None


def got(child):
    return [(m["seq"], m["dc"]) for m in messages_of(child)]


def check_deliveries(child, expected, how, what):
    """Exactly these (seq, delivery-count) pairs, in this order; bodies unchanged, unsettled."""
    actual = got(child)
    if actual != expected:
        seqs = [s for s, _ in actual]
        raise Failure("%s: expected (seq, delivery-count) %s, got %s (missing %s, duplicated %s)"
                      % (what, expected, actual,
                         [s for s, _ in expected if s not in seqs],
                         sorted({s for s in seqs if seqs.count(s) > 1})))
    for m in messages_of(child):
        check_eq(m["body"], body(how, m["seq"]), "%s: body of seq %d" % (what, m["seq"]))
        check(not m["settled"], "%s: seq %d was delivered pre-settled" % (what, m["seq"]))


def check_durable_source(source, address, what, selector=None):
    check(source is not None, "%s: the attach reply has a null source" % what)
    check_eq(source["address"], address, "%s: echoed source address" % what)
    check_eq(source["durable"], 2, "%s: echoed source durable (unsettled-state)" % what)
    check_eq(source["expiry_policy"], "never", "%s: echoed source expiry-policy" % what)
    if selector is not None:
        f = source.get("filter") or {}
        values = [v.get("value") if isinstance(v, dict) else v for v in f.values()]
        check(selector in values, "%s: the stored selector %r is not in the echoed filter %s"
              % (what, selector, f))


def check_refused(child, what):
    lines = child.expect_success(20)
    refused = [l for l in lines if l.get("event") == "refused"]
    check(refused, "%s: the attach was not refused: %s" % (what, lines))
    check_eq(refused[0]["condition"], "amqp:resource-locked", "%s: refusal condition" % what)
    check(refused[0]["source_null"], "%s: the refusing attach reply has a source" % what)
    check(not messages_of(child), "%s: the refused receiver got messages" % what)


def proton_send(broker, how, seqs, what):
    try:
        h = send_messages(broker.url(), PUBLISH, proton_msgs(how, seqs), timeout=20)
    except ClientError as e:
        raise Failure("%s: Proton sending seqs %s to %s: %s" % (what, list(seqs), PUBLISH, e)) from None
    check_eq(h.accepted, len(seqs), "%s: messages accepted" % what)


def recovered_subscriptions(broker):
    try:
        with open(broker.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if "durable subscription recovered" in line:
            m = re.search(r"subscription=(\S+)", line)
            b = re.search(r"bound=(\S+)", line)
            out.append("%s (bound=%s)" % (m.group(1) if m else "?", b.group(1) if b else "?"))
    return out


def one_round(workdir, how):
    _brokers.clear()
    base = os.path.join(workdir, how)
    data_dir = os.path.join(base, "data")
    subs = Subs(workdir, how)
    t0 = time.monotonic()

    # 1. Subscribe; a second receiver with the same identity is refused.
    b1 = start_broker(base, data_dir, 1)
    r1 = subs.rhea(b1, "sub1", RHEA_ADDR, "--count", 5, "--hold", 8, "--end", "detach")
    p1 = subs.proton(b1, "sub1", PROTON_ADDR, "--count", 10, "--hold", "8,9", "--end", "detach")
    check_durable_source(ready(r1)["source"], RHEA_ADDR, "%s: rhea subscriber" % how)
    check_durable_source(ready(p1)["source"], PROTON_ADDR, "%s: Proton subscriber" % how)
    check_refused(subs.rhea(b1, "dup", RHEA_ADDR, "--expect-refusal"),
                  "%s: second rhea receiver with the same identity" % how)
    check_refused(subs.proton(b1, "dup", PROTON_ADDR, "--expect-refusal"),
                  "%s: second Proton receiver with the same identity" % how)

    # 2. Live messages, some left unsettled; then detach (closed=false).
    proton_send(b1, how, range(10), "%s: seqs 0-9" % how)
    for c in (r1, p1):
        e = ended(c.expect_success(20))
        check(e is not None, "%s: %s did not see its detach answered" % (how, c.name))
        check_eq(e["remote_closed"], False, "%s: %s: closed flag of the broker's detach answer"
                 % (how, c.name))
    check_deliveries(r1, [(s, 0) for s in (0, 2, 4, 6, 8)], how, "%s: rhea before detach" % how)
    check_deliveries(p1, [(s, 0) for s in range(10)], how, "%s: Proton before detach" % how)

    # 3. While they are away: 20 durable messages from rhea, each accepted (reached a queue).
    sender = node_client("rhea-sender-%s" % how, "sub_rhea_send.js",
                         [b1.port, PUBLISH, write_spec(workdir, "away-%s" % how,
                                                       rhea_spec(how, range(10, 30)))], workdir)
    done = [l for l in sender.expect_success(20) if l.get("event") == "done"]
    check(done, "%s: the rhea sender reported nothing" % how)
    check_eq(done[0]["outcomes"], ["accepted"] * 20,
             "%s: outcomes of seqs 10-29 sent while the subscribers were away" % how)
    b1.check_alive()

    # 4. Restart.
    if how == "sigterm":
        stop_process(b1.proc, grace=10.0)
        check_eq(b1.proc.returncode, 0, "%s: broker 1 exit code after SIGTERM" % how)
    else:
        kill_process(b1.proc)
        check_eq(b1.proc.returncode, -9, "%s: broker 1 exit status after SIGKILL" % how)
    b2 = start_broker(base, data_dir, 2)
    recovered = recovered_subscriptions(b2)

    # 5. Re-attach (rhea with a new selector); then 10 more messages.
    r2 = subs.rhea(b2, "sub2", RHEA_ADDR, "--selector", SELECTOR, "--count", 1 + 10 + 2,
                   "--end", "detach")
    p2 = subs.proton(b2, "sub2", PROTON_ADDR, "--count", 2 + 20 + 10, "--end", "close")
    check_durable_source(ready(r2)["source"], RHEA_ADDR, "%s: rhea re-attach" % how, SELECTOR)
    check_durable_source(ready(p2)["source"], PROTON_ADDR, "%s: Proton re-attach" % how)
    proton_send(b2, how, range(30, 40), "%s: seqs 30-39 after the re-attach" % how)
    ends = {}
    for c in (r2, p2):
        e = ended(c.expect_success(25))
        check(e is not None, "%s: %s did not see its link end answered" % (how, c.name))
        ends[c] = e["remote_closed"]
    check_deliveries(r2, [(8, 1)] + [(s, 0) for s in range(10, 30, 2)] + [(32, 0), (36, 0)], how,
                     "%s: rhea after the restart (8 redelivered, 10-28 queued while away, then "
                     "only new messages matching %r)" % (how, SELECTOR))
    check_deliveries(p2, [(8, 1), (9, 1)] + [(s, 0) for s in range(10, 40)], how,
                     "%s: Proton after the restart" % how)
    check_eq(ends[r2], False, "%s: closed flag of the answer to rhea's detach" % how)
    check_eq(ends[p2], True, "%s: closed flag of the answer to Proton's close" % how)

    # 6. A null-source lookup of the rhea subscription, which then closes it.
    lookup = subs.rhea(b2, "lookup", "-", "--count", 0, "--end", "close")
    lines = lookup.expect_success(20)
    r = [l for l in lines if l.get("event") == "ready"]
    check(r, "%s: the null-source receiver was not attached: %s" % (how, lines))
    check_durable_source(r[0]["source"], RHEA_ADDR,
                         "%s: source echoed to a receiver attaching with a null source" % how,
                         SELECTOR)
    check(not messages_of(lookup), "%s: the null-source receiver got messages: %s"
          % (how, got(lookup)))
    e = ended(lines)
    check(e is not None and e["remote_closed"], "%s: the lookup's close was not answered "
          "with closed=true: %s" % (how, e))

    # 7. Both subscriptions ended: nothing takes a message any more.
    try:
        outcomes = send_outcomes(b2.url(), PUBLISH, proton_msgs(how, [40]))
    except ClientError as e:
        raise Failure("%s: sending seq 40: %s" % (how, e)) from None
    check_eq(outcomes, ["released"], "%s: outcome of seq 40 (subject orders.new) once both "
             "subscriptions were closed (a queue still bound would accept it)" % how)

    # 8. The same identities again: new subscriptions, only what is sent from now on.
    r3 = subs.rhea(b2, "sub3", RHEA_ADDR, "--count", 2, "--end", "close")
    p3 = subs.proton(b2, "sub3", PROTON_ADDR, "--count", 4, "--end", "close")
    ready(r3)
    ready(p3)
    proton_send(b2, how, range(41, 45), "%s: seqs 41-44 after attaching again" % how)
    for c in (r3, p3):
        e = ended(c.expect_success(20))
        check(e is not None and e["remote_closed"], "%s: %s: close not answered: %s"
              % (how, c.name, e))
    check_deliveries(r3, [(42, 0), (44, 0)], how, "%s: rhea, attached again after its close" % how)
    check_deliveries(p3, [(s, 0) for s in range(41, 45)], how,
                     "%s: Proton, attached again after its close" % how)
    b2.check_alive()
    stop_process(b2.proc, grace=10.0)

    log("%s: rhea and Proton durable subscribers (same link name, own container-ids) detached "
        "holding 1 and 2 unsettled; 20 messages sent while away; broker %s; recovered %s"
        % (how, "stopped with SIGTERM" if how == "sigterm" else "killed with SIGKILL",
           recovered or "(no recovery log line)"))
    log("%s: after re-attaching, rhea got 8 (dc 1) + 10 queued + 2 matching its new selector, "
        "Proton 8, 9 (dc 1) + 20 queued + 10 new, in order, once each; a duplicate identity was "
        "refused (amqp:resource-locked); a null-source attach got the stored source; after "
        "close a message is released and re-attaching gets only new messages (%.1fs)"
        % (how, time.monotonic() - t0))


def main(workdir):
    for how in ("sigterm", "sigkill"):
        try:
            one_round(workdir, how)
        except Failure as e:
            tails = "".join("\n  [%s]%s" % (label, b.log_tail(20)) for label, b in _brokers)
            raise Failure("%s%s" % (e, tails)) from None


if __name__ == "__main__":
    run_scenario(main)
