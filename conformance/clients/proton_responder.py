"""A Proton request/reply responder process.

Requests on NAMED_QUEUE are answered through a sender attached to the request's reply-to
address (one per address, cached); requests on ANON_QUEUE through one anonymous-relay sender
(null target) with `to` = reply-to. The reply body is the request body upper-cased, with the
request's correlation-id (or its message-id) and application property "via".

JSON lines: {"event":"ready","anonymous_relay":bool}, {"event":"request",...} per request,
{"event":"stopped"} on SIGTERM.

usage: proton_responder.py URL NAMED_QUEUE ANON_QUEUE
"""

import os
import signal
import sys
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton import Message, symbol  # noqa: E402
from proton_util import Run, client_main, emit, run  # noqa: E402


class Responder(Run):
    def __init__(self, url, named_queue, anon_queue):
        super().__init__(timeout=240, prefetch=50, auto_accept=False)
        self.url = url
        self.named_queue = named_queue
        self.anon_queue = anon_queue
        self.senders = {}  # link name -> (sender, pending deque)
        self.by_address = {}
        self.stop_requested = False
        self.ready_links = 0
        self.answered = 0

    def progress(self):
        return "%d answered" % self.answered

    def setup(self):
        self.conn = self.connect(self.url)
        self.container.create_receiver(self.conn, self.named_queue, name="requests-named")
        self.container.create_receiver(self.conn, self.anon_queue, name="requests-anon")
        self.anon = self.container.create_sender(self.conn, None, name="replies-anon")
        self.senders[self.anon.name] = (self.anon, deque())
        self.after(0.1, self._tick)

    def _tick(self):
        if self.finished:
            return
        if self.stop_requested:
            emit(event="stopped", answered=self.answered)
            self.finish()
            return
        self.after(0.1, self._tick)

    def on_link_opened(self, event):
        self.ready_links += 1
        if self.ready_links == 3:
            caps = self.conn.remote_offered_capabilities or []
            emit(event="ready", anonymous_relay=symbol("ANONYMOUS-RELAY") in list(caps))

    def _sender_for(self, address):
        if address not in self.by_address:
            s = self.container.create_sender(self.conn, address, name="replies-to-%s" % address)
            self.by_address[address] = s.name
            self.senders[s.name] = (s, deque())
        return self.senders[self.by_address[address]]

    def on_message(self, event):
        req = event.message
        via = "named" if event.receiver.name == "requests-named" else "anon"
        emit(event="request", via=via, correlation_id=req.correlation_id, reply_to=req.reply_to)
        if not req.reply_to:
            self.reject(event.delivery)
            return
        reply = Message(body=str(req.body).upper(),
                        correlation_id=req.correlation_id or req.id,
                        properties={"via": via})
        if via == "named":
            sender, pending = self._sender_for(req.reply_to)
        else:
            reply.address = req.reply_to
            sender, pending = self.senders[self.anon.name]
        pending.append((reply, event.delivery))
        self._flush(sender, pending)

    def on_sendable(self, event):
        entry = self.senders.get(event.sender.name)
        if entry:
            self._flush(*entry)

    def _flush(self, sender, pending):
        while pending and sender.credit:
            reply, request_delivery = pending.popleft()
            sender.send(reply)
            self.accept(request_delivery)
            self.answered += 1

    def on_link_error(self, event):
        name = event.link.name
        if name.startswith("replies-to-"):
            # The requester's temporary queue went away with its receiver: expected.
            cond = event.link.remote_condition
            emit(event="reply-link-detached", link=name, condition=cond.name if cond else None)
            self.senders.pop(name, None)
            self.by_address = {a: n for a, n in self.by_address.items() if n != name}
            return
        super().on_link_error(event)

    def on_link_closing(self, event):
        if event.link.name.startswith("replies-to-"):
            self.senders.pop(event.link.name, None)
            self.by_address = {a: n for a, n in self.by_address.items() if n != event.link.name}
            return
        super().on_link_closing(event)

    def on_rejected(self, event):
        self.fail("the broker rejected a reply on %s: %s"
                  % (event.link.name, event.delivery.remote.condition))


def main():
    url, named_queue, anon_queue = sys.argv[1:4]
    h = Responder(url, named_queue, anon_queue)
    signal.signal(signal.SIGTERM, lambda s, f: setattr(h, "stop_requested", True))
    run(h)


if __name__ == "__main__":
    client_main(main)
