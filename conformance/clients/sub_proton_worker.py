"""A Proton worker for scenario 24 (lock expiry); the twin of sub_rhea_worker.js, with the same
options and JSON lines.

It grants --credit once (no automatic top-up: a worker holding a message takes no other) and
does with its k-th delivery what the k-th entry of --plan says (the last entry repeats):

  accept            accept it
  hold              never settle it; when the broker settles it, report that ("settled").
                    --count waits for the broker to settle every held delivery
  hold-late-accept  as hold, then accept it once the broker has settled it (what goes on the
                    wire then is the library's business: Proton sends nothing for a delivery
                    the peer has settled)
  freeze-accept     block the whole process (no I/O at all) until the file --go exists, then
                    accept it: the accept is written although the broker's settlement may be
                    waiting unread in the socket. Then attach a receiver (no credit) to
                    --sync-address and wait for the broker's attach reply: the broker handles
                    a connection's frames in order, so it has handled the accept by then
  wait-release      hold it until the file --go exists, then release it and grant 1 credit

usage: sub_proton_worker.py URL ADDRESS [--credit N] [--plan A,B,...] [--go FILE]
                            [--sync-address ADDR] [--count N] [--linger S] [--timeout S]

JSON lines:
  {"event":"ready","t"}    t: before the credit is granted, so before any delivery (and lock)
  {"event":"msg","k","seq","body","dc","settled","action","t"}
  {"event":"settled","seq","state","settled","t"}      the broker settled a delivery we hold
  {"event":"late-accept","seq","remote_settled_before","t"}   remote_settled_before: whether
                                                     the library knew of the broker's settlement
  {"event":"synced"}  {"event":"released","seq"}  {"event":"done","count":N}
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton import Delivery  # noqa: E402
from proton_util import Run, client_main, emit, plain, run_until_term  # noqa: E402

STATES = {Delivery.ACCEPTED: "accepted", Delivery.RELEASED: "released", Delivery.REJECTED: "rejected",
          Delivery.MODIFIED: "modified", Delivery.RECEIVED: "received"}


class Worker(Run):
    def __init__(self, args):
        super().__init__(timeout=args.timeout, prefetch=0, auto_accept=False)
        self.args = args
        self.plan = args.plan.split(",")
        self.count = 0
        self.conn = None
        self.receiver = None
        self.sync_link = None
        self.held = {}  # delivery tag -> (seq, action)
        self.waiting_release = []  # (delivery, seq)
        self.stop_requested = False
        self.lingering = False

    def progress(self):
        return "%d received" % self.count

    def setup(self):
        self.conn = self.connect(self.args.url)
        self.receiver = self.container.create_receiver(self.conn, self.args.address)
        self.after(0.02, self._tick)

    def _tick(self):
        if self.finished:
            return
        if self.stop_requested:
            self._done()
            return
        if self.waiting_release and self.args.go and os.path.exists(self.args.go):
            for d, seq in self.waiting_release:
                d.update(Delivery.RELEASED)
                d.settle()
                emit(event="released", seq=seq)
                self.receiver.flow(1)
            self.waiting_release = []
        self.after(0.02, self._tick)

    def _done(self):
        if not self.finished:
            emit(event="done", count=self.count)
            self.finish()

    def on_link_opened(self, event):
        if event.link == self.receiver:
            emit(event="ready", t=time.time())  # before the credit: earlier than any delivery
            event.link.flow(self.args.credit)
        elif event.link == self.sync_link:
            emit(event="synced")
            self.sync_link = None
            self._check_count()

    def on_message(self, event):
        if self.finished:
            return
        m, d = event.message, event.delivery
        action = self.plan[min(self.count, len(self.plan) - 1)]
        self.count += 1
        seq = (m.properties or {}).get("seq")
        emit(event="msg", k=self.count, seq=seq, body=plain(m.body), dc=m.delivery_count,
             settled=bool(d.settled), action=action, t=time.time())
        if action == "accept":
            self.accept(d)
        elif action in ("hold", "hold-late-accept"):
            self.held[d.tag] = (seq, action)
        elif action == "freeze-accept":
            self._freeze_accept(d, seq)
        elif action == "wait-release":
            self.waiting_release.append((d, seq))
        else:
            self.fail("unknown action %r" % action)
            return
        self._check_count()

    def _check_count(self):
        # After a freeze, the reactor's clock is stale: a timer set now would fire at once. So
        # the linger starts once the sync attach is answered (the clock has moved on by then),
        # and once the broker has settled every delivery we hold.
        if (self.args.count is not None and self.count == self.args.count
                and self.sync_link is None and not self.held and not self.lingering):
            self.lingering = True
            self.after(self.args.linger, self._done)

    def _freeze_accept(self, d, seq):
        deadline = time.monotonic() + 20
        while not os.path.exists(self.args.go):  # no event processing meanwhile
            if time.monotonic() > deadline:
                self.fail("freeze-accept: %s did not appear within 20s" % self.args.go)
                return
            time.sleep(0.01)
        before = bool(d.settled)
        d.update(Delivery.ACCEPTED)
        d.settle()
        emit(event="late-accept", seq=seq, remote_settled_before=before, t=time.time())
        # Proton writes pending attaches before dispositions: the sync attach goes out from a
        # later turn of the reactor, after this turn's output (the accept) was written.
        self.sync_link = "pending"
        self.after(0.05, self._sync)

    def _sync(self):
        self.sync_link = self.container.create_receiver(self.conn, self.args.sync_address)

    def on_settled(self, event):
        d = event.delivery
        if d.link != self.receiver or d.tag not in self.held:
            return
        seq, action = self.held.pop(d.tag)
        emit(event="settled", seq=seq, state=STATES.get(d.remote_state, str(d.remote_state)),
             settled=bool(d.settled), t=time.time())
        if action == "hold-late-accept":
            d.update(Delivery.ACCEPTED)
            d.settle()
            emit(event="late-accept", seq=seq, remote_settled_before=True, t=time.time())
        self._check_count()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("address")
    p.add_argument("--credit", type=int, default=1)
    p.add_argument("--plan", default="accept")
    p.add_argument("--go")
    p.add_argument("--sync-address", default="s24.sync")
    p.add_argument("--count", type=int)
    p.add_argument("--linger", type=float, default=0.7)
    p.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    run_until_term(Worker(args))


if __name__ == "__main__":
    client_main(main)
