"""A Proton consumer process for the scenarios. Prints one JSON line per event:

  {"event":"ready"}                                  the receiver is attached
  {"event":"msg","body":...,"seq":...,"dc":N,"settled":bool,"held":bool}
  {"event":"stopped","count":N}                      on SIGTERM / --idle-exit, after closing

usage: proton_consumer.py URL ADDRESS [--credit N] [--accept-first K] [--hold]
                          [--idle-exit SECONDS] [--timeout SECONDS]

--credit N        credit window (a FlowController refills it); default 10.
--hold            never settle anything (the messages stay unsettled at the broker).
--accept-first K  accept the first K messages, then hold every later one. Credit is given by
                  hand: K first, and only after those K are accepted (and therefore, on the same
                  connection, after the broker has processed the accepts) N more. With K = 0:
                  N credits once, every message held.
--idle-exit S     close and exit after S seconds without a message (once one arrived).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton_util import Run, client_main, emit, run_until_term  # noqa: E402


class Consumer(Run):
    def __init__(self, args):
        manual = args.accept_first is not None
        super().__init__(timeout=args.timeout, prefetch=0 if manual else args.credit,
                         auto_accept=False)
        self.args = args
        self.manual = manual
        self.count = 0
        self.accepted = 0
        self.stop_requested = False
        self.last_msg = None

    def progress(self):
        return "%d received, %d accepted" % (self.count, self.accepted)

    def setup(self):
        conn = self.connect(self.args.url)
        self.receiver = self.container.create_receiver(conn, self.args.address)
        if self.manual:
            self.receiver.flow(self.args.accept_first or self.args.credit)
        self.after(0.1, self._tick)

    def _tick(self):
        if self.finished:
            return
        idle = self.args.idle_exit
        if self.stop_requested or (idle and self.last_msg and time.monotonic() - self.last_msg > idle):
            emit(event="stopped", count=self.count)
            self.finish()
            return
        self.after(0.1, self._tick)

    def on_link_opened(self, event):
        if event.link.is_receiver:
            emit(event="ready", address=event.link.remote_source.address)

    def on_message(self, event):
        self.count += 1
        self.last_msg = time.monotonic()
        m = event.message
        hold = self.args.hold or (self.manual and self.accepted >= self.args.accept_first)
        emit(event="msg", body=m.body, seq=(m.properties or {}).get("seq"), dc=m.delivery_count,
             settled=bool(event.delivery.settled), held=hold, t=time.time())
        if hold:
            return
        self.accept(event.delivery)
        self.accepted += 1
        if self.manual and self.accepted == self.args.accept_first:
            # Written after the accepts on the same connection: a message arriving on this
            # credit proves the broker has processed them.
            self.receiver.flow(self.args.credit)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("address")
    p.add_argument("--credit", type=int, default=10)
    p.add_argument("--accept-first", type=int)
    p.add_argument("--hold", action="store_true")
    p.add_argument("--idle-exit", type=float)
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    run_until_term(Consumer(args))


if __name__ == "__main__":
    client_main(main)
