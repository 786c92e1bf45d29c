"""Scenario 24: a message whose consumer holds it past the queue's lock_duration goes to
another worker; the first worker's late outcome is ignored; a message whose lock keeps
running out is dead-lettered at max_delivery_count.

Queues declared with `lock_duration = "1s"` (`"2s"` for `s24.c` and `s24.d`, whose worker B
holds the message a while), each given one message, each worked by two worker processes
(clients/sub_*_worker.py/js) that grant credit once and never top it up: worker A attaches
first and takes the message; worker B attaches once A has it.

- `s24.a` (A Proton, B rhea) and `s24.b` (A rhea, B Proton): A holds the message. After the
  lock runs out the broker settles A's delivery itself, as released: Proton's `on_settled`
  with `delivery.remote_state` RELEASED and `delivery.settled`, rhea's receiver `settled`
  event with `delivery.remote_settled` and a `released` `remote_state`. A then accepts it
  (neither library puts a disposition for a delivery the peer settled on the wire). B gets
  the same message (body, seq) with delivery-count 1, not earlier than the lock allows (1 s
  after A granted its credit, which precedes the delivery), and accepts it.
- `s24.c` (A rhea, B Proton) and `s24.d` (A Proton, B rhea): a late accept that really
  reaches the broker. A blocks its whole process on receipt (no I/O), so it cannot read the
  broker's settlement; once B has the message (delivery-count 1), A wakes, accepts, and the
  accept goes on the wire (the library reports it had not seen the settlement), followed by
  an attach on the same connection whose reply proves the broker handled the accept. B then
  *releases* its delivery and gets the message again, still with delivery-count 1, and
  accepts it: had the broker applied A's late accept, the message would be gone and B's
  release would bring nothing back.
- Afterwards a drain on each of the four queues returns nothing: each message was consumed
  exactly once.
- `s24.dl`, also with `max_delivery_count = 2` and `dead_letter_queue = "s24.dlq"`: a rhea
  worker and then a Proton worker each hold the message until their lock runs out (delivery-
  count 0, then 1; each sees the broker settle its delivery). After the second expiry it is
  in `s24.dlq` (a rhea consumer gets exactly it, with `x-opt-deadletter-reason`
  "max-delivery-count" and `x-opt-deadletter-source` "s24.dl", body unchanged), and `s24.dl`
  drains empty.

All the queues run at the same time; the scenario takes about 7 s.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Failure, check, check_eq, log, messages_of, node_client,  # noqa: E402
                     python_client, run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, drain_queues, send_messages  # noqa: E402
from route_common import broker_with, write_spec  # noqa: E402

LOCK = {"s24.a": 1.0, "s24.b": 1.0, "s24.c": 2.0, "s24.d": 2.0, "s24.dl": 1.0}  # lock_duration, s
RESOLUTION = 0.002  # s: the clients read the clock in whole ms (rhea) or finer
DLQ = "s24.dlq"
# queue -> (seq, who sends, A's client, A's plan, B's client, B's plan)
WORK = {
    "s24.a": (1, "proton", "proton", "hold-late-accept", "rhea", "accept"),
    "s24.b": (2, "rhea", "rhea", "hold-late-accept", "proton", "accept"),
    "s24.c": (3, "proton", "rhea", "freeze-accept", "proton", "wait-release,accept"),
    "s24.d": (4, "rhea", "proton", "freeze-accept", "rhea", "wait-release,accept"),
}
DL = "s24.dl"
DL_SEQ = 5


def body(seq):
    return "task %d" % seq


def worker(lib, name, broker, address, plan, workdir, *opts):
    args = [address, "--plan", plan] + [str(o) for o in opts]
    if lib == "proton":
        return python_client(name, "sub_proton_worker.py", [broker.url()] + args, workdir)
    return node_client(name, "sub_rhea_worker.js", [broker.port] + args, workdir)


def first(child, event, timeout, what, pred=lambda l: True):
    return child.wait_for(lambda l: l.get("event") == event and pred(l), timeout, what)


def check_msg(line, seq, dc, what):
    check_eq((line["seq"], line["body"], line["dc"]), (seq, body(seq), dc),
             "%s: (seq, body, delivery-count)" % what)
    check(not line["settled"], "%s: delivered pre-settled" % what)


def check_broker_settled(line, what):
    check_eq((line["state"], line["settled"]), ("released", True),
             "%s: the broker's settlement of the expired delivery (state, settled)" % what)


def main(workdir):
    broker = broker_with(workdir, queues=[
        {"name": q, "lock_duration": "%ds" % LOCK[q]} for q in WORK
    ] + [{"name": DL, "lock_duration": "%ds" % LOCK[DL], "max_delivery_count": 2,
          "dead_letter_queue": DLQ}])
    t0 = time.monotonic()

    # One message per queue, from the client the table says.
    by_proton = [q for q, w in WORK.items() if w[1] == "proton"] + [DL]
    for q in by_proton:
        seq = DL_SEQ if q == DL else WORK[q][0]
        try:
            send_messages(broker.url(), q, [Message(body=body(seq), properties={"seq": seq})])
        except ClientError as e:
            raise Failure("Proton sending to %s: %s" % (q, e)) from None
    for q in [q for q, w in WORK.items() if w[1] == "rhea"]:
        seq = WORK[q][0]
        sender = node_client("rhea-sender-%s" % q, "sub_rhea_send.js",
                             [broker.port, q, write_spec(workdir, q, [{"body": body(seq),
                                                                       "props": {"seq": seq}}])],
                             workdir)
        done = [l for l in sender.expect_success(20) if l.get("event") == "done"]
        check(done and done[0]["outcomes"] == ["accepted"], "rhea sender to %s: %s" % (q, done))

    # Worker A on each queue takes the message; the first dead-letter holder too.
    go = {(q, who): os.path.join(workdir, "go-%s-%s" % (q, who)) for q in WORK for who in "AB"}
    a, b = {}, {}
    for q, (seq, _, a_lib, a_plan, _, _) in WORK.items():
        opts = ["--go", go[(q, "A")]] if a_plan == "freeze-accept" else []
        a[q] = worker(a_lib, "A-%s-%s" % (a_lib, q), broker, q, a_plan, workdir, "--count", 1,
                      "--linger", 0.5, *opts)
    h1 = worker("rhea", "holder-1-rhea", broker, DL, "hold", workdir, "--count", 1, "--linger", 0.5)
    a_got, a_ready = {}, {}
    for q, child in a.items():
        # A's "ready" comes before it grants credit: earlier than the delivery and its lock.
        a_ready[q] = first(child, "ready", 20, "its attach on %s" % q)
        line = first(child, "msg", 20, "the message on %s" % q)
        check_msg(line, WORK[q][0], 0, "%s: worker A" % child.name)
        a_got[q] = line
    h1_ready = first(h1, "ready", 20, "its attach on %s" % DL)
    h1_got = first(h1, "msg", 20, "the message on %s" % DL)
    check_msg(h1_got, DL_SEQ, 0, "%s: first holder" % h1.name)

    # Worker B on each queue; the second dead-letter holder.
    for q, (seq, _, _, _, b_lib, b_plan) in WORK.items():
        count = 2 if b_plan.startswith("wait-release") else 1
        b[q] = worker(b_lib, "B-%s-%s" % (b_lib, q), broker, q, b_plan, workdir, "--count", count,
                      "--linger", 0.5, "--go", go[(q, "B")])
    h2 = worker("proton", "holder-2-proton", broker, DL, "hold", workdir, "--count", 1,
                "--linger", 0.5)

    # B gets the message once A's lock ran out, with delivery-count 1.
    for q, child in b.items():
        line = first(child, "msg", 20, "the message on %s after A's lock ran out" % q)
        check_msg(line, WORK[q][0], 1, "%s: worker B, first delivery" % child.name)
        held_for = line["t"] - a_ready[q]["t"]
        check(held_for + RESOLUTION >= LOCK[q], "%s: B got the message %.3fs after A granted "
              "credit, before A's %.1fs lock could run out" % (q, held_for, LOCK[q]))
    h2_got = first(h2, "msg", 20, "the message on %s after the first holder's lock" % DL)
    check_msg(h2_got, DL_SEQ, 1, "%s: second holder" % h2.name)
    check(h2_got["t"] - h1_ready["t"] + RESOLUTION >= LOCK[DL], "%s: the second holder got it "
          "%.3fs after the first granted credit, before its lock could run out"
          % (DL, h2_got["t"] - h1_ready["t"]))

    # s24.a and s24.b: A saw the broker settle its delivery as released, then accepted late.
    for q in ("s24.a", "s24.b"):
        settled = first(a[q], "settled", 10, "the broker's settlement on %s" % q)
        check_broker_settled(settled, "%s: worker A (%s)" % (q, WORK[q][2]))
        first(a[q], "late-accept", 5, "its late accept")

    # s24.c and s24.d: A wakes up and accepts; its accept reaches the broker.
    time.sleep(0.3)  # the broker's settlement is in A's socket by now (A cannot read it)
    for q in ("s24.c", "s24.d"):
        open(go[(q, "A")], "w").close()
    for q in ("s24.c", "s24.d"):
        late = first(a[q], "late-accept", 10, "its late accept on %s" % q)
        check(not late["remote_settled_before"], "%s: %s had already seen the broker's settlement, "
              "so its accept never went on the wire" % (q, a[q].name))
        first(a[q], "synced", 10, "the attach after its late accept on %s" % q)
        open(go[(q, "B")], "w").close()  # B releases its delivery: the message must come back
    for q in ("s24.c", "s24.d"):
        first(b[q], "released", 10, "B's release on %s" % q)
        again = first(b[q], "msg", 10, "the message again on %s after B released it" % q)
        check_msg(again, WORK[q][0], 1, "%s: worker B, after its release (A's late accept must "
                  "not have consumed the message)" % q)

    # Every worker ends by itself; nobody got anything more.
    for q in WORK:
        for child, n in ((a[q], 1), (b[q], 2 if q in ("s24.c", "s24.d") else 1)):
            child.expect_success(20)
            check_eq(len(messages_of(child)), n, "%s: messages %s received" % (q, child.name))
    try:
        left = drain_queues(broker.url(), list(WORK))
    except ClientError as e:
        raise Failure("draining the work queues: %s" % e) from None
    for q, msgs in left.items():
        check_eq([m.body for m in msgs], [], "%s: messages left after B accepted" % q)
    log("lock expiry: B got each message with delivery-count 1 (%s s after A); A's deliveries "
        "settled released by the broker (Proton on_settled / rhea settled); late accepts that "
        "reached the broker (rhea and Proton A blocked, then accepted) were ignored: B's release "
        "brought the message back, and every queue drained empty"
        % ", ".join("%.2f" % (messages_of(b[q])[0]["t"] - a_got[q]["t"]) for q in WORK))

    # s24.dl: both holders saw the broker settle; then the message is in the DLQ.
    for child in (h1, h2):
        settled = first(child, "settled", 10, "the broker's settlement on %s" % DL)
        check_broker_settled(settled, "%s: %s" % (DL, child.name))
    dlq = node_client("rhea-dlq", "route_rhea_recv.js",
                      [broker.port, DLQ, "--count", 1, "--linger", 0.5, "--action", "accept"], workdir)
    dlq.expect_success(20)
    got = messages_of(dlq)
    check_eq([(m["seq"], m["body"]) for m in got], [(DL_SEQ, body(DL_SEQ))], "%s contents" % DLQ)
    ann = got[0]["annotations"]
    check_eq(ann.get("x-opt-deadletter-reason"), "max-delivery-count", "dead letter's reason")
    check_eq(ann.get("x-opt-deadletter-source"), DL, "dead letter's source")
    for child in (h1, h2):
        child.expect_success(20)
        check_eq(len(messages_of(child)), 1, "%s: messages received" % child.name)
    try:
        left = drain_queues(broker.url(), [DL])
    except ClientError as e:
        raise Failure("draining %s: %s" % (DL, e)) from None
    check_eq([m.body for m in left[DL]], [], "%s: messages left after dead-lettering" % DL)
    broker.check_alive()
    log("max_delivery_count 2: held by rhea (dc 0) then Proton (dc 1) until each lock ran out, "
        "then in %s with reason max-delivery-count (%.1fs in all)" % (DLQ, time.monotonic() - t0))


if __name__ == "__main__":
    run_scenario(main)
