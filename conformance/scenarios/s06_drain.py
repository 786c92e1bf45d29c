"""Scenario 6: drain with fewer messages than credit.

Proton: 7 messages queued, receiver.drain(20): exactly the 7 arrive, then the broker's flow
(drain, credit 0) comes back at once and Proton reports 13 credits drained. Then drain(10) on
the empty queue (nothing, 10 drained), and with 3 more queued, drain(2) (2 messages, 0
drained; one left) and drain(5) (the last one, 4 drained).
rhea: 5 messages queued, receiver.drain = true; add_credit(20): 'receiver_drained' with all 5
received; then again on the empty queue.
Each drain must complete within 2 s.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import Broker, Failure, check, check_eq, log, node_client, run_scenario  # noqa: E402
from proton import Message  # noqa: E402
from proton_util import ClientError, Run, run, send_messages  # noqa: E402

QUICK = 2.0  # seconds a drain may take


class Drains(Run):
    """Runs the drains in `plan`: (messages to add first, credit) pairs."""

    def __init__(self, url, address, plan):
        super().__init__(timeout=30, prefetch=0)
        self.url = url
        self.address = address
        self.plan = list(plan)
        self.results = []  # (received, drained credit, seconds)
        self.count = 0
        self.current = None

    def progress(self):
        return "results so far %s, %d received in the current drain" % (self.results, self.count)

    def setup(self):
        self.conn = self.connect(self.url)
        self.receiver = self.container.create_receiver(self.conn, self.address)

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.next_drain()

    def next_drain(self):
        if not self.plan:
            return self.finish()
        add, credit = self.plan.pop(0)
        if add:
            # Queue more from a second connection first, then drain.
            self.pending_credit = credit
            self.to_send = [Message(body="extra %d" % i) for i in range(add)]
            self.sender = self.container.create_sender(self.conn, self.address)
            self.accepted = 0
            return
        self.start(credit)

    def on_sendable(self, event):
        while self.to_send and event.sender.credit:
            event.sender.send(self.to_send.pop(0))

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == 3:
            event.sender.close()
            self.start(self.pending_credit)

    def start(self, credit):
        self.count = 0
        self.current = time.monotonic()
        self.receiver.drain(credit)

    def on_message(self, event):
        self.count += 1

    def on_link_flow(self, event):
        r = event.link
        if r.is_receiver and self.current is not None and r.credit == 0 and not r.draining():
            drained = r.drained()
            self.results.append((self.count, drained, time.monotonic() - self.current))
            self.current = None
            self.next_drain()


def main(workdir):
    broker = Broker(workdir)
    address = "s06.drain.proton"
    try:
        send_messages(broker.url(), address, [Message(body="m%d" % i) for i in range(7)])
        h = run(Drains(broker.url(), address, [(0, 20), (0, 10), (3, 2), (0, 5)]))
    except ClientError as e:
        raise Failure("Proton: %s" % e) from None
    expected = [(7, 13), (0, 10), (2, 0), (1, 4)]
    got = [(n, d) for n, d, _ in h.results]
    check_eq(got, expected, "Proton drains: (messages received, credit drained) per drain")
    slow = [round(t, 3) for _, _, t in h.results if t > QUICK]
    check(not slow, "Proton: a drain took longer than %ss: %s" % (QUICK, slow))
    log("Proton: drain(20) with 7 queued → 7 messages, 13 credits back in %.0f ms; drain(10) on "
        "an empty queue → 0, 10 back in %.0f ms; drain(2) with 3 → 2; drain(5) → the last one"
        % (h.results[0][2] * 1000, h.results[1][2] * 1000))

    address = "s06.drain.rhea"
    try:
        send_messages(broker.url(), address, [Message(body="m%d" % i) for i in range(5)])
    except ClientError as e:
        raise Failure("Proton sender: %s" % e) from None
    rhea = node_client("rhea-drain", "rhea_drain.js", [broker.port, address, 20], workdir)
    lines = [l for l in rhea.expect_success(30) if l.get("event") == "drained"]
    check_eq([(l["round"], l["count"], l["credit"]) for l in lines], [(1, 5, 0), (2, 5, 0)],
             "rhea drains: (round, messages received so far, credit after)")
    slow = [l["ms"] for l in lines if l["ms"] > QUICK * 1000]
    check(not slow, "rhea: a drain took longer than %ss: %s ms" % (QUICK, slow))
    log("rhea: drain with 20 credit and 5 queued → 5 messages, receiver_drained in %d ms; "
        "again on the empty queue in %d ms" % (lines[0]["ms"], lines[1]["ms"]))
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
