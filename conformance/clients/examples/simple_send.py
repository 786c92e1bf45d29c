"""A sender in the style of Proton's simple_send example: a plain MessagingHandler, the address
in the URL (host:port/address), COUNT messages {"sequence": n}, done when all are accepted.
Prints JSON lines: {"event":"confirmed","count":N,"disconnects":N}.

usage: simple_send.py HOST:PORT/ADDRESS COUNT
"""

import json
import sys

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Send(MessagingHandler):
    def __init__(self, url, total):
        super().__init__()
        self.url = url
        self.total = total
        self.sent = 0
        self.confirmed = 0
        self.disconnects = 0

    def on_start(self, event):
        event.container.create_sender(self.url)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.total:
            n = self.sent + 1
            event.sender.send(Message(id=n, body={"sequence": n}))
            self.sent += 1

    def on_accepted(self, event):
        self.confirmed += 1
        if self.confirmed == self.total:
            print(json.dumps({"event": "confirmed", "count": self.confirmed,
                              "disconnects": self.disconnects}), flush=True)
            event.connection.close()

    def on_disconnected(self, event):
        self.disconnects += 1
        self.sent = self.confirmed


Container(Send(sys.argv[1], int(sys.argv[2]))).run()
