"""Scenario 5: released, modified and rejected, and the delivery-count each produces.

Five messages are queued, then one Proton receiver (R1) settles them by hand:
  undeliverable  modified(undeliverable-here, not delivery-failed): never offered to R1 again;
                 a second receiver (R2) gets it, delivery-count still 0;
  released       released: redelivered to R1 with delivery-count unchanged (0), then accepted;
  failed         modified(delivery-failed) twice: redelivered with delivery-count 1, then 2,
                 then accepted;
  rejected       rejected: never redelivered;
  plain          accepted at once, delivery-count 0.
The undeliverable-here message is first in the queue: the messages behind it must still reach
R1, and a drain on R1 while the queue holds only that message must complete at once. At the
end the queue is empty (a drain on R2 returns nothing more).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import Broker, Failure, check, check_eq, log, run_scenario  # noqa: E402
from proton import Delivery, Message  # noqa: E402
from proton_util import ClientError, Run, run, send_messages  # noqa: E402

ADDRESS = "s05.outcomes"
BODIES = ["undeliverable", "released", "failed", "rejected", "plain"]


def modify(delivery, failed, undeliverable):
    delivery.local.failed = failed
    delivery.local.undeliverable = undeliverable
    delivery.update(Delivery.MODIFIED)
    delivery.settle()


class Outcomes(Run):
    def __init__(self, url):
        super().__init__(timeout=30, prefetch=10, auto_accept=False)
        self.url = url
        self.seen = {b: [] for b in BODIES}  # body -> delivery-counts seen by R1
        self.r2_seen = []
        self.phase = 1
        self.r2 = None
        self.drain_done = False
        self.r1_drain_started = None
        self.r1_drain = None

    def progress(self):
        return "phase %d, R1 saw %s, R2 saw %s" % (self.phase, self.seen, self.r2_seen)

    def setup(self):
        self.r1 = self.container.create_receiver(self.connect(self.url), ADDRESS, name="r1")

    def on_message(self, event):
        body, dc, d = event.message.body, event.message.delivery_count, event.delivery
        if event.receiver.name == "r2":
            return self.on_r2(body, dc, d)
        if body not in self.seen:
            return self.fail("R1 got an unknown message %r" % (body,))
        seen = self.seen[body]
        seen.append(dc)
        n = len(seen)
        if body == "undeliverable":
            if n > 1:
                return self.fail("modified(undeliverable-here) message offered to R1 again")
            modify(d, failed=False, undeliverable=True)
        elif body == "released":
            if n == 1:
                self.release(d, delivered=False)
            else:
                self.accept(d)
        elif body == "failed":
            if n < 3:
                modify(d, failed=True, undeliverable=False)
            else:
                self.accept(d)
        elif body == "rejected":
            if n > 1:
                return self.fail("rejected message redelivered (delivery-count %s)" % (dc,))
            self.reject(d)
        else:
            if n > 1:
                return self.fail("accepted message redelivered")
            self.accept(d)
        want = {"undeliverable": 1, "released": 2, "failed": 3, "rejected": 1, "plain": 1}
        if self.phase == 1 and all(len(self.seen[b]) >= c for b, c in want.items()):
            self.phase = 2
            # Anything redelivered to R1 after this would show up within the second.
            self.after(1.0, self.drain_r1)

    def drain_r1(self):
        # The queue now holds only the message R1 may not have: a drain must still complete.
        if self.finished:
            return
        self.r1_drain_started = time.monotonic()
        self.r1.drain(1)

    def start_r2(self):
        if self.finished:
            return
        self.phase = 3
        self.r2 = self.container.create_receiver(self.connect(self.url), ADDRESS, name="r2")

    def on_r2(self, body, dc, d):
        self.r2_seen.append((body, dc))
        self.accept(d)
        if len(self.r2_seen) == 1:
            self.phase = 4
            self.r2.drain(10)

    def on_link_flow(self, event):
        link = event.link
        if link.credit != 0 or link.draining():
            return
        if self.phase == 2 and link.name == "r1" and self.r1_drain_started is not None:
            self.r1_drain = (link.drained(), time.monotonic() - self.r1_drain_started)
            self.start_r2()
        elif self.phase == 4 and link.name == "r2":
            self.drain_done = True
            self.after(0.3, self.finish)


def main(workdir):
    broker = Broker(workdir)
    try:
        send_messages(broker.url(), ADDRESS, [Message(body=b) for b in BODIES])
        h = run(Outcomes(broker.url()))
    except ClientError as e:
        raise Failure(str(e)) from None
    check_eq(h.seen["released"], [0, 0], "released: delivery-counts R1 saw (must be unchanged)")
    check_eq(h.seen["failed"], [0, 1, 2], "modified(delivery-failed) twice: delivery-counts R1 saw")
    check_eq(h.seen["rejected"], [0], "rejected: deliveries to R1 (never redelivered)")
    check_eq(h.seen["plain"], [0], "accepted: deliveries to R1")
    check_eq(h.seen["undeliverable"], [0], "modified(undeliverable-here): deliveries to R1")
    check_eq(h.r2_seen, [("undeliverable", 0)],
             "R2 (a drain after) must get only the undeliverable-here message, delivery-count 0")
    check(h.r1_drain is not None and h.r1_drain[0] > 0 and h.r1_drain[1] < 2.0,
          "R1's drain while the queue holds only a message R1 may not take: %r" % (h.r1_drain,))
    check_eq(h.drain_done, True, "R2's drain completed")
    broker.check_alive()
    log("released → redelivered, delivery-count %s; modified(delivery-failed) ×2 → %s; "
        "modified(undeliverable-here) → other receiver, delivery-count %d (R1's drain meanwhile "
        "done in %.0f ms); rejected → gone; queue empty afterwards"
        % (h.seen["released"], h.seen["failed"], h.r2_seen[0][1], h.r1_drain[1] * 1000))


if __name__ == "__main__":
    run_scenario(main)
