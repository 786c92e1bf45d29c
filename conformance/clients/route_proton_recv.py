"""A Proton receiver process for the routing scenarios (16 to 22); the Proton twin of
route_rhea_recv.js, with the same options and JSON lines.

Each message is settled as its application-property `action` says (default accept):
  accept | reject (with condition ferry-test:refused and description "proton: " + the
  property `why` when the message has `why`, else with no error) | release | modify-failed
  (modified, delivery-failed) | hold (never settled) | detach (the link is closed without
  settling it, and a new receiver is attached to the same address)
Pre-settled deliveries (browsing) are never settled.

usage: route_proton_recv.py URL ADDRESS [--credit N] [--browse] [--count N] [--linger S]
                            [--idle-exit S] [--action A] [--timeout S]
--action A  settle every message with A, whatever its `action` property says

JSON lines:
  {"event":"ready","address":...,"distribution_mode":...}   each time a receiver is attached
  {"event":"msg","seq","body","dc","settled","priority","ttl","subject","first_acquirer",
   "annotations","props","action","t"}   ttl in ms, null when the header has none (Proton
                                 cannot tell an absent priority from 4: it reports 4); props:
                                 the application-properties; action: what it did with it
  {"event":"done","count":N}     before closing (also on SIGTERM)
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton import Condition, Delivery, Terminus  # noqa: E402
from proton.reactor import Copy  # noqa: E402
from proton_util import Run, client_main, emit, plain, run_until_term  # noqa: E402


class Receiver(Run):
    def __init__(self, args):
        # Credit by hand: Proton's FlowController tops up before the current delivery is
        # advanced, so with a window of 1 it never grants the second credit.
        super().__init__(timeout=args.timeout, prefetch=0, auto_accept=False)
        self.args = args
        self.count = 0
        self.last = None
        self.stop_requested = False
        self.closed_by_us = set()
        self.conn = None

    def progress(self):
        return "%d received" % self.count

    def attach(self):
        opts = Copy() if self.args.browse else None
        self.container.create_receiver(self.conn, self.args.address, options=opts).flow(self.args.credit)

    def setup(self):
        self.conn = self.connect(self.args.url)
        self.attach()
        self.after(0.05, self._tick)

    def _done(self):
        if not self.finished:
            emit(event="done", count=self.count)
            self.finish()

    def _tick(self):
        if self.finished:
            return
        idle = self.args.idle_exit
        if self.stop_requested or (idle and self.last and time.monotonic() - self.last > idle):
            self._done()
            return
        self.after(0.05, self._tick)

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.last = time.monotonic()
            src = event.link.remote_source
            modes = {Terminus.DIST_MODE_COPY: "copy", Terminus.DIST_MODE_MOVE: "move"}
            emit(event="ready", address=src.address,
                 distribution_mode=modes.get(src.distribution_mode))

    def on_link_closing(self, event):
        if not self.finished and event.link.name not in self.closed_by_us:
            self.fail("the broker detached link %s" % event.link.name)

    def on_link_closed(self, event):
        if event.link.name in self.closed_by_us and not self.finished:
            self.attach()

    def on_message(self, event):
        if self.finished:
            return
        self.count += 1
        self.last = time.monotonic()
        m, d = event.message, event.delivery
        props = m.properties or {}
        action = self.args.action or props.get("action", "accept")
        settled = bool(d.settled)
        emit(event="msg", seq=props.get("seq"), body=plain(m.body), dc=m.delivery_count,
             settled=settled, priority=m.priority,
             ttl=int(round(m.ttl * 1000)) if m.ttl else None, subject=m.subject,
             first_acquirer=m.first_acquirer,
             annotations={str(k): plain(v) for k, v in (m.annotations or {}).items()},
             props={str(k): plain(v) for k, v in props.items()}, action=action, t=time.time())
        if not settled:
            if action == "accept":
                self.accept(d)
            elif action == "reject":
                if "why" in props:
                    d.local.condition = Condition("ferry-test:refused", "proton: %s" % props["why"])
                d.update(Delivery.REJECTED)
                d.settle()
            elif action == "release":
                self.release(d, delivered=False)
            elif action == "modify-failed":
                d.local.failed = True
                d.update(Delivery.MODIFIED)
                d.settle()
            elif action == "detach":
                self.closed_by_us.add(event.receiver.name)
                event.receiver.close()
            elif action != "hold":
                self.fail("unknown action %r" % (action,))
                return
        r = event.receiver
        if not (r.state & r.LOCAL_CLOSED) and r.credit < self.args.credit:
            r.flow(self.args.credit - r.credit)  # this delivery was advanced: top up
        if self.args.count is not None and self.count == self.args.count:
            self.after(self.args.linger, self._done)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("address")
    p.add_argument("--credit", type=int, default=100)
    p.add_argument("--browse", action="store_true")
    p.add_argument("--count", type=int)
    p.add_argument("--linger", type=float, default=0.5)
    p.add_argument("--idle-exit", type=float)
    p.add_argument("--action")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    run_until_term(Receiver(args))


if __name__ == "__main__":
    client_main(main)
