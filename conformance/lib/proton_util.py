"""Helpers for Proton (python3-qpid-proton) clients: a MessagingHandler base with a deadline
and orderly shutdown, and JSON-line output for client processes."""

import json
import signal
import sys
import time

from proton.handlers import MessagingHandler
from proton.reactor import Container


class ClientError(Exception):
    """What a Proton run reports when it failed or timed out."""


class _Call:
    """A timer handler calling fn()."""

    def __init__(self, fn):
        self.fn = fn

    def on_timer_task(self, event):
        self.fn()


class Run(MessagingHandler):
    """Base handler: subclasses implement setup(); call finish() when done or fail(msg).

    Every connection is opened through connect() with reconnect off, so a dropped
    connection is an error instead of a silent retry. The whole run is bounded by `timeout`;
    closing is bounded by 5 s more.
    """

    def __init__(self, timeout, **kw):
        super().__init__(**kw)
        self.timeout = timeout
        self.error = None
        self.finished = False
        self.container = None
        self.connections = []
        self._timer = None
        self._grace = None
        self.started = None

    # -- subclass API

    def setup(self):
        raise NotImplementedError

    def progress(self):
        """A short description of how far the run got, for timeout messages."""
        return ""

    def connect(self, url, **kw):
        kw.setdefault("reconnect", False)
        conn = self.container.connect(url, **kw)
        self.connections.append(conn)
        return conn

    def after(self, delay, fn):
        return self.container.schedule(delay, _Call(fn))

    def finish(self):
        if self.finished:
            return
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        open_conns = [c for c in self.connections if not (c.state & c.LOCAL_CLOSED)]
        for c in open_conns:
            c.close()
        # Cancelled timers still bound Proton's select() sleep, so the run is ended with
        # stop() once every connection is closed, or after 5 s if one never closes.
        self._grace = self.after(5.0, self._force_stop)
        self._maybe_done()

    def fail(self, message):
        if self.error is None:
            self.error = message
        self.finish()

    # -- plumbing

    def _all_closed(self):
        for c in self.connections:
            t = c.transport
            if t is not None and not t.closed:
                if not (c.state & c.REMOTE_CLOSED):
                    return False
        return True

    def _maybe_done(self):
        if self.finished and self._grace is not None and self._all_closed():
            self._grace.cancel()
            self._grace = None
            self.container.stop()

    def _force_stop(self):
        self._grace = None
        self.container.stop()

    def _timed_out(self):
        self._timer = None
        p = self.progress()
        self.fail("timed out after %ss%s" % (self.timeout, (": " + p) if p else ""))

    def on_start(self, event):
        self.container = event.container
        self.started = time.monotonic()
        self._timer = self.after(self.timeout, self._timed_out)
        try:
            self.setup()
        except Exception as e:  # noqa: BLE001 - report, do not hang
            self.fail("setup raised %r" % (e,))

    def on_connection_closed(self, event):
        self._maybe_done()

    def on_transport_closed(self, event):
        if not self.finished:
            self.fail("connection lost: %s" % (_cond(event.transport.condition),))
        self._maybe_done()

    def on_transport_error(self, event):
        if not self.finished:
            self.fail("transport error: %s" % (_cond(event.transport.condition),))

    def on_connection_error(self, event):
        self.fail("connection closed by the broker: %s" % (_cond(event.connection.remote_condition),))

    def on_session_error(self, event):
        self.fail("session ended by the broker: %s" % (_cond(event.session.remote_condition),))

    def on_link_error(self, event):
        self.fail("link %s detached by the broker: %s"
                  % (event.link.name, _cond(event.link.remote_condition)))

    def on_connection_closing(self, event):
        if not self.finished:
            self.fail("the broker closed the connection")

    def on_session_closing(self, event):
        if not self.finished:
            self.fail("the broker ended a session")

    def on_link_closing(self, event):
        if not self.finished:
            self.fail("the broker detached link %s" % event.link.name)


def _cond(c):
    if c is None:
        return "no condition"
    return "%s: %s" % (c.name, c.description)


def run(handler):
    """Runs the handler to completion; raises ClientError if it failed."""
    Container(handler).run()
    if handler.error:
        raise ClientError(handler.error)
    if not handler.finished:
        raise ClientError("the container stopped before the run finished: " + handler.progress())
    return handler


def run_until_term(handler):
    """Runs the handler as `run` does; SIGTERM asks it to stop (its `stop_requested`)."""
    def on_term(signum, frame):
        handler.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    return run(handler)


def plain(v):
    """A property value as JSON can carry it: bytes as hex, other types as text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def emit(**obj):
    """One JSON line on stdout (the child-process protocol of harness.Child)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def client_main(fn):
    """Entry point of a client process: errors become an {"error": ...} line and exit 1."""
    try:
        fn()
    except ClientError as e:
        emit(error=str(e))
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001
        import traceback
        emit(error="%s: %s" % (type(e).__name__, e))
        traceback.print_exc()
        sys.exit(1)


class _Send(Run):
    def __init__(self, url, address, messages, timeout, presettled, connect_kw):
        super().__init__(timeout=timeout, prefetch=0)
        self.url = url
        self.address = address
        self.messages = messages
        self.presettled = presettled
        self.connect_kw = connect_kw
        self.sent = 0
        self.accepted = 0

    def progress(self):
        return "%d of %d sent, %d accepted" % (self.sent, len(self.messages), self.accepted)

    def setup(self):
        from proton.reactor import AtLeastOnce, AtMostOnce
        option = AtMostOnce() if self.presettled else AtLeastOnce()
        self.conn = self.connect(self.url, **self.connect_kw)
        self.sender = self.container.create_sender(self.conn, self.address, options=option)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < len(self.messages):
            event.sender.send(self.messages[self.sent])
            self.sent += 1
        if self.presettled and self.sent == len(self.messages):
            self.finish()

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == len(self.messages):
            self.finish()

    def on_rejected(self, event):
        self.fail("the broker rejected a message: %s" % (event.delivery.remote.condition,))

    def on_released(self, event):
        self.fail("the broker released or modified a message it was sent")


def send_messages(url, address, messages, timeout=60, presettled=False, **connect_kw):
    """Sends every message on one link and returns once all are accepted (unsettled) or
    written (pre-settled). `address` None is an anonymous-relay sender."""
    return run(_Send(url, address, list(messages), timeout, presettled, connect_kw))


class _Receive(Run):
    def __init__(self, url, address, count, timeout, linger, connect_kw, options=None):
        super().__init__(timeout=timeout, prefetch=min(max(count, 1), 500))
        self.options = options
        self.connect_kw = connect_kw
        self.url = url
        self.address = address
        self.count = count
        self.linger = linger
        self.messages = []
        self.waiting = False

    def progress(self):
        return "%d of %d received" % (len(self.messages), self.count)

    def setup(self):
        self.container.create_receiver(self.connect(self.url, **self.connect_kw), self.address,
                                       options=self.options)

    def on_message(self, event):
        self.messages.append(event.message)
        if len(self.messages) >= self.count and not self.waiting:
            self.waiting = True
            # Anything beyond `count` that arrives meanwhile is kept, so callers see extras.
            self.after(self.linger, self.finish)


def receive_messages(url, address, count, timeout=60, linger=0.2, options=None, **connect_kw):
    """Receives (and accepts) at least `count` messages; returns every message that arrived
    before the link closed, `linger` seconds after the count-th. `options`: link options
    such as a `proton.reactor.Selector`."""
    return run(_Receive(url, address, count, timeout, linger, connect_kw, options)).messages


class _SendOutcomes(Run):
    def __init__(self, url, address, messages, timeout, connect_kw):
        super().__init__(timeout=timeout, prefetch=0)
        self.url = url
        self.address = address
        self.messages = messages
        self.connect_kw = connect_kw
        self.sent = 0
        self.outcomes = [None] * len(messages)
        self.settled = 0
        self.tags = {}

    def progress(self):
        return "%d of %d sent, %d settled" % (self.sent, len(self.messages), self.settled)

    def setup(self):
        conn = self.connect(self.url, **self.connect_kw)
        self.container.create_sender(conn, self.address)
        if not self.messages:
            self.finish()

    def on_sendable(self, event):
        while event.sender.credit and self.sent < len(self.messages):
            d = event.sender.send(self.messages[self.sent])
            self.tags[d.tag] = self.sent
            self.sent += 1

    def _outcome(self, event, name):
        i = self.tags.get(event.delivery.tag)
        if i is None or self.outcomes[i] is not None:
            return
        self.outcomes[i] = name
        self.settled += 1
        if self.settled == len(self.messages):
            self.finish()

    def on_accepted(self, event):
        self._outcome(event, "accepted")

    def on_rejected(self, event):
        self._outcome(event, "rejected")

    def on_released(self, event):
        # MessagingHandler reports released and modified alike.
        self._outcome(event, "released" if event.delivery.remote_state == event.delivery.RELEASED
                      else "modified")


def send_outcomes(url, address, messages, timeout=30, **connect_kw):
    """Sends every message (unsettled) on one link and returns the outcome of each, in send
    order: "accepted", "rejected", "released" or "modified". Unlike send_messages, an outcome
    other than accepted is a result, not an error."""
    return run(_SendOutcomes(url, address, list(messages), timeout, connect_kw)).outcomes


class _DrainEmpty(Run):
    def __init__(self, url, addresses, credit, timeout, connect_kw):
        super().__init__(timeout=timeout, prefetch=0)
        self.url = url
        self.addresses = list(addresses)
        self.credit = credit
        self.connect_kw = connect_kw
        self.links = {}  # link name -> address
        self.got = {a: [] for a in self.addresses}
        self.drained = set()

    def progress(self):
        return "drains complete on %s of %s" % (sorted(self.drained), self.addresses)

    def setup(self):
        conn = self.connect(self.url, **self.connect_kw)
        for a in self.addresses:
            self.links[self.container.create_receiver(conn, a).name] = a
        if not self.addresses:
            self.finish()

    def on_link_opened(self, event):
        if event.link.is_receiver:
            event.link.drain(self.credit)

    def on_message(self, event):
        self.got[self.links[event.link.name]].append(event.message)

    def on_link_flow(self, event):
        r = event.link
        a = self.links.get(r.name)
        if a is not None and r.is_receiver and r.credit == 0 and not r.draining():
            self.drained.add(a)
            if len(self.drained) == len(self.addresses):
                self.finish()


def drain_queues(url, addresses, credit=10, timeout=10, **connect_kw):
    """Attaches a receiver to each address and drains `credit` from it: returns
    {address: [messages received (and accepted) before the broker's drain answer]}, which is
    empty for an empty queue."""
    return run(_DrainEmpty(url, addresses, credit, timeout, connect_kw)).got
