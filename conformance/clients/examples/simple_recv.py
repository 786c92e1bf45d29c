"""A receiver in the style of Proton's simple_recv example: a plain MessagingHandler, the
address in the URL, stops after COUNT messages. Prints one JSON line per message
({"event":"msg","id":...,"body":...}) and {"event":"done","count":N,"disconnects":N}.

usage: simple_recv.py HOST:PORT/ADDRESS COUNT
"""

import json
import sys

from proton.handlers import MessagingHandler
from proton.reactor import Container


class Recv(MessagingHandler):
    def __init__(self, url, count):
        super().__init__()
        self.url = url
        self.expected = count
        self.received = 0
        self.disconnects = 0

    def on_start(self, event):
        event.container.create_receiver(self.url)

    def on_message(self, event):
        if event.message.id and event.message.id < self.received:
            return  # ignore duplicates, as the example does
        if self.received < self.expected:
            print(json.dumps({"event": "msg", "id": event.message.id, "body": event.message.body}),
                  flush=True)
            self.received += 1
            if self.received == self.expected:
                print(json.dumps({"event": "done", "count": self.received,
                                  "disconnects": self.disconnects}), flush=True)
                event.receiver.close()
                event.connection.close()

    def on_disconnected(self, event):
        self.disconnects += 1


Container(Recv(sys.argv[1], int(sys.argv[2]))).run()
