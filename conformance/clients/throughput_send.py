"""Throughput probe sender: COUNT messages of SIZE bytes, unsettled, as fast as credit allows.
Prints {"event":"start","t":...} and {"event":"done","accepted":N,"t":...}.

usage: throughput_send.py URL ADDRESS COUNT SIZE
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton import Message  # noqa: E402
from proton_util import Run, client_main, emit, run  # noqa: E402


class Send(Run):
    def __init__(self, url, address, count, size):
        super().__init__(timeout=240, prefetch=0)
        self.url, self.address, self.count = url, address, count
        self.body = b"x" * size
        self.sent = 0
        self.accepted = 0

    def progress(self):
        return "%d sent, %d accepted" % (self.sent, self.accepted)

    def setup(self):
        self.container.create_sender(self.connect(self.url), self.address)
        emit(event="start", t=time.time())

    def on_sendable(self, event):
        s = event.sender
        while s.credit and self.sent < self.count:
            s.send(Message(body=self.body, inferred=True))
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == self.count:
            emit(event="done", accepted=self.accepted, t=time.time())
            self.finish()

    def on_rejected(self, event):
        self.fail("rejected: %s" % (event.delivery.remote.condition,))


def main():
    url, address, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    run(Send(url, address, count, size))


if __name__ == "__main__":
    client_main(main)
