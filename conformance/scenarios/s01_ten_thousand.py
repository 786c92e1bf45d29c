"""Scenario 1: 10,000 messages with Proton, at-least-once and at-most-once.

At-least-once: sender and receiver unsettled; every message is accepted by the broker, and
the receiver gets each one exactly once, in order, unsettled. At-most-once: both links ask
for snd-settle-mode settled; the receiver still gets exactly 10,000 (nothing is lost on
loopback), pre-settled, in order.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import Broker, Failure, check, log, run_scenario  # noqa: E402
from proton import Link, Message  # noqa: E402
from proton.reactor import AtLeastOnce, AtMostOnce  # noqa: E402
from proton_util import ClientError, Run, run  # noqa: E402

N = 10_000


class SendReceive(Run):
    def __init__(self, url, address, presettled):
        super().__init__(timeout=90, prefetch=300)
        self.url = url
        self.address = address
        self.presettled = presettled
        self.sent = 0
        self.accepted = 0
        self.received = []
        self.settled_flags = set()
        self.checking = False

    def progress(self):
        return "sent %d, accepted %d, received %d" % (self.sent, self.accepted, len(self.received))

    def setup(self):
        option = AtMostOnce() if self.presettled else AtLeastOnce()
        self.sender = self.container.create_sender(self.connect(self.url), self.address,
                                                   options=option)
        self.receiver = self.container.create_receiver(self.connect(self.url), self.address,
                                                       options=option)

    def on_sendable(self, event):
        s = event.sender
        while s.credit and self.sent < N:
            s.send(Message(body="message %05d" % self.sent, properties={"seq": self.sent},
                           durable=False))
            self.sent += 1
        self._check_done()

    def on_accepted(self, event):
        self.accepted += 1
        self._check_done()

    def on_rejected(self, event):
        self.fail("the broker rejected message %d: %s" % (self.accepted, event.delivery.remote.condition))

    def on_released(self, event):
        self.fail("the broker released/modified a sent message")

    def on_message(self, event):
        seq = event.message.properties.get("seq")
        expected = len(self.received)
        if seq != expected:
            return self.fail("out of order or duplicate: got seq %r, expected %d" % (seq, expected))
        if event.message.body != "message %05d" % seq:
            return self.fail("body of %d changed: %r" % (seq, event.message.body))
        self.received.append(seq)
        self.settled_flags.add(bool(event.delivery.settled))
        self._check_done()

    def _check_done(self):
        if self.checking or len(self.received) < N or self.sent < N:
            return
        if not self.presettled and self.accepted < N:
            return
        # Everything is in; give a duplicate half a second to show up before the final count.
        self.checking = True
        self.after(0.5, self.finish)


def one_run(broker, presettled):
    name = "at-most-once" if presettled else "at-least-once"
    address = "s01.%s" % ("presettled" if presettled else "unsettled")
    t0 = time.monotonic()
    try:
        h = run(SendReceive(broker.url(), address, presettled))
    except ClientError as e:
        raise Failure("%s: %s" % (name, e)) from None
    dt = time.monotonic() - t0
    check(len(h.received) == N, "%s: received %d messages, expected exactly %d" % (name, len(h.received), N))
    check(h.received == list(range(N)), "%s: messages not received in order exactly once" % name)
    if presettled:
        check(h.settled_flags == {True}, "%s: deliveries were not pre-settled: %s" % (name, h.settled_flags))
        check(h.receiver.remote_snd_settle_mode == Link.SND_SETTLED,
              "%s: the broker's attach did not confirm snd-settle-mode settled" % name)
    else:
        check(h.accepted == N, "%s: %d of %d sends accepted" % (name, h.accepted, N))
        check(h.settled_flags == {False}, "%s: deliveries were pre-settled on an unsettled link" % name)
    log("%s: %d sent, %d received in order exactly once%s (%.1fs, %.0f msg/s)"
        % (name, h.sent, len(h.received), "" if presettled else ", %d accepted" % h.accepted,
           dt, N / dt))


def main(workdir):
    broker = Broker(workdir)
    one_run(broker, presettled=False)
    one_run(broker, presettled=True)
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
