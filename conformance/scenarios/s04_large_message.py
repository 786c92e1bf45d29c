"""Scenario 4: a 10 MiB message through listeners with max-frame-size 4096 and 1 MiB.

The broker has two listeners, `max_frame_size = 4096` and `= 1048576`, and
`max_message_size = "16MiB"`. A 10 MiB random data body goes A→A (the receiving client also
limits its own frames to 4096), B→B, A→B and B→A with Proton, and B→A with a rhea receiver. The body must arrive intact (SHA-256), and every client must
have seen the listener's max-frame-size in the broker's open.
"""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import Broker, Failure, check, check_eq, log, node_client, run_scenario  # noqa: E402
from proton import Message  # noqa: E402
from proton_util import ClientError, Run, run, send_messages  # noqa: E402

SIZE = 10 * 1024 * 1024
FRAMES = [4096, 1048576]


class Transfer(Run):
    def __init__(self, send_url, recv_url, address, body, recv_max_frame=None):
        super().__init__(timeout=60, prefetch=1)
        self.send_url = send_url
        self.recv_url = recv_url
        self.address = address
        self.body = body
        self.recv_max_frame = recv_max_frame
        self.accepted = False
        self.got = None
        self.frame_sizes = {}

    def progress(self):
        return "accepted=%s received=%s" % (self.accepted, self.got is not None)

    def setup(self):
        kw = {"max_frame_size": self.recv_max_frame} if self.recv_max_frame else {}
        self.rconn = self.connect(self.recv_url, **kw)
        self.sconn = self.connect(self.send_url)
        self.container.create_receiver(self.rconn, self.address)
        self.container.create_sender(self.sconn, self.address)
        self.sent = False

    def on_connection_opened(self, event):
        c = event.connection
        role = "sender" if c == self.sconn else "receiver"
        self.frame_sizes[role] = c.transport.remote_max_frame_size

    def on_sendable(self, event):
        if not self.sent:
            event.sender.send(Message(body=self.body, inferred=True))
            self.sent = True

    def on_accepted(self, event):
        self.accepted = True
        self._done()

    def on_rejected(self, event):
        self.fail("the broker rejected the 10 MiB message: %s" % (event.delivery.remote.condition,))

    def on_message(self, event):
        self.got = event.message.body
        self._done()

    def _done(self):
        if self.accepted and self.got is not None:
            self.finish()


def main(workdir):
    broker = Broker(workdir, listeners=[{"max_frame_size": f} for f in FRAMES],
                    broker={"max_message_size": "16MiB"})
    body = os.urandom(SIZE)
    digest = hashlib.sha256(body).hexdigest()
    for s, r in ((0, 0), (1, 1), (0, 1), (1, 0)):
        address = "s04.large.%d.%d" % (s, r)
        recv_limit = 4096 if (s, r) == (0, 0) else None
        t0 = time.monotonic()
        try:
            h = run(Transfer(broker.url(s), broker.url(r), address, body, recv_limit))
        except ClientError as e:
            raise Failure("%d→%d: %s" % (FRAMES[s], FRAMES[r], e)) from None
        got = h.got
        check(isinstance(got, bytes), "%d→%d: body is %s, not binary" % (FRAMES[s], FRAMES[r], type(got)))
        check_eq(len(got), SIZE, "%d→%d: body size" % (FRAMES[s], FRAMES[r]))
        check(hashlib.sha256(got).hexdigest() == digest, "%d→%d: body corrupted (SHA-256 differs)"
              % (FRAMES[s], FRAMES[r]))
        check_eq(h.frame_sizes.get("sender"), FRAMES[s], "max-frame-size the sending client saw")
        check_eq(h.frame_sizes.get("receiver"), FRAMES[r], "max-frame-size the receiving client saw")
        log("Proton: 10 MiB via listener max-frame-size %d → %d%s intact in %.2fs"
            % (FRAMES[s], FRAMES[r], " (client max-frame-size 4096)" if recv_limit else "",
               time.monotonic() - t0))

    # rhea receiver on the 4096 listener. Its own max-frame-size is 64 KiB: rhea 3.0.5 does
    # not widen its session incoming-window (2048 frames) in the middle of a delivery, so a
    # 10 MiB message in 4 KiB frames (2561 frames) would stall in rhea itself.
    address = "s04.large.rhea"
    rhea = node_client("rhea-large", "rhea_large_recv.js", [broker.ports[0], address, 65536], workdir)
    rhea.wait_for(lambda l: l.get("event") == "ready", 20, "the rhea receiver")
    t0 = time.monotonic()
    try:
        send_messages(broker.url(1), address, [Message(body=body, inferred=True)], timeout=60)
    except ClientError as e:
        raise Failure("sending to the rhea receiver: %s" % e) from None
    lines = rhea.expect_success(60)
    msg = [l for l in lines if l.get("event") == "msg"]
    check(msg, "rhea received nothing: %s" % lines)
    check_eq(msg[0]["size"], SIZE, "rhea: body size")
    check(msg[0]["sha256"] == digest, "rhea: body corrupted (SHA-256 differs)")
    check_eq(msg[0]["remote_max_frame_size"], 4096, "rhea: max-frame-size in the broker's open")
    log("rhea: 10 MiB via listener max-frame-size 1048576 → 4096 intact in %.2fs"
        % (time.monotonic() - t0))
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
