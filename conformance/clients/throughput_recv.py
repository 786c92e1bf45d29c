"""Throughput probe receiver: receives COUNT messages (auto-accepted), then reports
{"event":"done","count":N,"first":t,"last":t}. Prints {"event":"ready"} once attached.

usage: throughput_recv.py URL ADDRESS COUNT
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton_util import Run, client_main, emit, run  # noqa: E402


class Recv(Run):
    def __init__(self, url, address, count):
        super().__init__(timeout=240, prefetch=1000)
        self.url, self.address, self.count = url, address, count
        self.received = 0
        self.first = None

    def progress(self):
        return "%d received" % self.received

    def setup(self):
        self.container.create_receiver(self.connect(self.url), self.address)

    def on_link_opened(self, event):
        emit(event="ready")

    def on_message(self, event):
        if self.first is None:
            self.first = time.time()
        self.received += 1
        if self.received == self.count:
            emit(event="done", count=self.received, first=self.first, last=time.time())
            self.finish()


def main():
    run(Recv(sys.argv[1], sys.argv[2], int(sys.argv[3])))


if __name__ == "__main__":
    client_main(main)
