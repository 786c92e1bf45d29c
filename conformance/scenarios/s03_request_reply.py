"""Scenario 3: request/reply through a dynamic (temporary) queue.

A Proton responder process answers requests on two queues: (a) through a named sender
attached to the request's reply-to address, (b) through an anonymous-relay sender (null
target, `to` = reply-to). Requesters, each on its own connection:
  1. Proton Container: receiver with dynamic=True, reply_to = the assigned address;
  2. Proton BlockingConnection + SyncRequestResponse(conn, None): requests also go out through
     an anonymous-relay sender, routed on their `to`;
  3. rhea: open_receiver({source:{dynamic:true}}).
Every reply must come back exactly once with the right correlation-id and body.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (Broker, Failure, check, check_eq, log, node_client, python_client,  # noqa: E402
                     run_scenario)
from proton import Message  # noqa: E402
from proton.utils import BlockingConnection, SyncRequestResponse  # noqa: E402
from proton_util import ClientError, Run, run  # noqa: E402

NAMED = "s03.requests.named"
ANON = "s03.requests.anon"
K = 50
DYNAMIC_PREFIX = "$ferry.tmp."


class Requester(Run):
    def __init__(self, url):
        super().__init__(timeout=60, prefetch=100)
        self.url = url
        self.reply_to = None
        self.expected = {}
        self.replies = 0
        self.sent = {NAMED: 0, ANON: 0}
        self.senders = {}

    def progress(self):
        return "%d of %d replies, reply address %r" % (self.replies, 2 * K, self.reply_to)

    def setup(self):
        self.conn = self.connect(self.url)
        self.receiver = self.container.create_receiver(self.conn, None, dynamic=True)

    def on_link_opened(self, event):
        if event.link.is_receiver and self.reply_to is None:
            self.reply_to = event.link.remote_source.address
            if not self.reply_to:
                return self.fail("the broker assigned no address to the dynamic source")
            for q in (NAMED, ANON):
                s = self.container.create_sender(self.conn, q)
                self.senders[s.name] = q

    def on_sendable(self, event):
        q = self.senders.get(event.sender.name)
        while q and event.sender.credit and self.sent[q] < K:
            via = "named" if q == NAMED else "anon"
            cid = "proton-%s-%d" % (via, self.sent[q])
            body = "request %s %d" % (via, self.sent[q])
            self.expected[cid] = (body.upper(), via)
            event.sender.send(Message(body=body, reply_to=self.reply_to, correlation_id=cid))
            self.sent[q] += 1

    def on_message(self, event):
        m = event.message
        want = self.expected.pop(m.correlation_id, None)
        if want is None:
            return self.fail("unexpected or duplicate reply %r: %r" % (m.correlation_id, m.body))
        got = (m.body, (m.properties or {}).get("via"))
        if got != want:
            return self.fail("reply %s is %r, expected %r" % (m.correlation_id, got, want))
        self.replies += 1
        if self.replies == 2 * K:
            self.after(0.5, self.finish)  # a duplicate would arrive as an unexpected reply


def blocking_requests(url):
    """SyncRequestResponse(conn, None): the requests' own `to` routes them (anonymous relay)."""
    conn = BlockingConnection(url, timeout=20, reconnect=False)
    try:
        client = SyncRequestResponse(conn, None)
        check(client.reply_to and client.reply_to.startswith(DYNAMIC_PREFIX),
              "SyncRequestResponse: dynamic reply address %r lacks the %s prefix"
              % (client.reply_to, DYNAMIC_PREFIX))
        n = 0
        for q, via in ((NAMED, "named"), (ANON, "anon")):
            for i in range(10):
                body = "sync %s %d" % (via, i)
                reply = client.call(Message(address=q, body=body))
                check_eq((reply.body, (reply.properties or {}).get("via")), (body.upper(), via),
                         "SyncRequestResponse reply %d via %s" % (i, via))
                n += 1
        address = client.reply_to
    finally:
        conn.close()
    return n, address


def main(workdir):
    broker = Broker(workdir)
    responder = python_client("responder", "proton_responder.py", [broker.url(), NAMED, ANON], workdir)
    ready = responder.wait_for(lambda l: l.get("event") == "ready", 20, "the responder's links")
    check(ready["anonymous_relay"], "the broker does not offer ANONYMOUS-RELAY in its open")

    # 1. Proton Container requester.
    try:
        h = run(Requester(broker.url()))
    except ClientError as e:
        raise Failure("Proton requester: %s" % e) from None
    check(h.reply_to.startswith(DYNAMIC_PREFIX),
          "dynamic address %r lacks the %s prefix" % (h.reply_to, DYNAMIC_PREFIX))
    check(not h.expected, "Proton requester: %d replies missing" % len(h.expected))
    log("Proton requester: %d replies (%d named, %d anonymous relay) via %s"
        % (h.replies, K, K, h.reply_to))

    # 2. SyncRequestResponse with an anonymous sender.
    try:
        n, address = blocking_requests(broker.url())
    except Failure:
        raise
    except Exception as e:  # noqa: BLE001 - proton.utils raises its own exception types
        raise Failure("SyncRequestResponse: %s: %s" % (type(e).__name__, e)) from None
    log("SyncRequestResponse(conn, None): %d calls answered via %s" % (n, address))

    # 3. rhea requester.
    rhea = node_client("rhea-requester", "rhea_requester.js", [broker.port, NAMED, ANON, 20], workdir)
    lines = rhea.expect_success(60)
    done = [l for l in lines if l.get("event") == "done"]
    check(done and done[0]["replies"] == 40, "rhea requester: %s" % lines)
    check(done[0]["address"].startswith(DYNAMIC_PREFIX),
          "rhea: dynamic address %r lacks the %s prefix" % (done[0]["address"], DYNAMIC_PREFIX))
    log("rhea requester: 40 replies (20 named, 20 anonymous relay) via %s" % done[0]["address"])

    responder.stop()
    requests = [l for l in responder.received if l.get("event") == "request"]
    check_eq(len(requests), 2 * K + 20 + 40, "requests the responder saw")
    addresses = {l["reply_to"] for l in requests}
    check_eq(len(addresses), 3, "distinct dynamic reply addresses (one per requester)")
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
