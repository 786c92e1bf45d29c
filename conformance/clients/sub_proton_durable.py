"""A Proton durable subscriber for scenario 23; the twin of sub_rhea_durable.js, with the same
options and JSON lines.

One receiver with a fixed container-id (`Container.container_id`) and an explicit link name,
with Proton's `DurableSubscription()` option (source durable = unsettled-state, expiry-policy
never). It accepts what it receives (except --hold seqs), and ends its link with
`Link.detach()` (closed=false: the subscription stays) or `Link.close()` (closed=true: the
subscription ends).

usage: sub_proton_durable.py URL ADDRESS --container ID --name LINK [--selector EXPR]
                             [--credit N] [--hold S1,S2] [--count N] [--linger S]
                             [--end detach|close] [--expect-refusal] [--timeout S]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from proton import Terminus  # noqa: E402
from proton.reactor import DurableSubscription, Selector  # noqa: E402
from proton_util import Run, client_main, emit, run_until_term  # noqa: E402

EXPIRY = {Terminus.EXPIRE_WITH_LINK: "link-detach", Terminus.EXPIRE_WITH_SESSION: "session-end",
          Terminus.EXPIRE_WITH_CONNECTION: "connection-close", Terminus.EXPIRE_NEVER: "never"}


def plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "descriptor") and hasattr(v, "value"):
        return {"descriptor": plain(v.descriptor), "value": plain(v.value)}
    return str(v)


def _data(d):
    """The value a terminus's Data field holds (None when empty)."""
    if d is None:
        return None
    d.rewind()
    return d.get_object() if d.next() is not None else None


def source_of(t):
    """The attach reply's source, or None when it was null (Proton then reports an
    unspecified terminus)."""
    if t is None or t.type == Terminus.UNSPECIFIED:
        return None
    caps, filt = _data(t.capabilities), _data(t.filter)
    return {"address": t.address, "durable": t.durability,
            "expiry_policy": EXPIRY.get(t.expiry_policy, str(t.expiry_policy)),
            "filter": plain(filt) if filt else None, "capabilities": plain(caps) if caps else None}


class Subscriber(Run):
    def __init__(self, args):
        super().__init__(timeout=args.timeout, prefetch=0, auto_accept=False)
        self.args = args
        self.hold = {int(s) for s in (args.hold or "").split(",") if s != ""}
        self.count = 0
        self.ending = False
        self.receiver = None
        self.stop_requested = False

    def progress(self):
        return "%d received" % self.count

    def setup(self):
        self.container.container_id = self.args.container
        conn = self.connect(self.args.url)
        options = [DurableSubscription()]
        if self.args.selector:
            options.append(Selector(self.args.selector))
        self.receiver = self.container.create_receiver(conn, self.args.address,
                                                       name=self.args.name, options=options)
        self.after(0.05, self._tick)

    def _tick(self):
        if self.finished:
            return
        if self.stop_requested:
            self._done()
            return
        self.after(0.05, self._tick)

    def _done(self):
        if not self.finished:
            emit(event="done", count=self.count)
            self.finish()

    def _end_link(self):
        if self.ending or self.finished:
            return
        self.ending = True
        if self.args.end == "close":
            self.receiver.close()
        else:
            self.receiver.detach()

    def on_link_opened(self, event):
        link = event.link
        emit(event="ready", source=source_of(link.remote_source))
        if self.args.expect_refusal:
            return
        link.flow(self.args.credit)
        if self.args.count == 0:
            self.after(self.args.linger, self._end_link)

    def on_link_error(self, event):
        c = event.link.remote_condition
        if self.args.expect_refusal and not self.ending:
            self.ending = True
            emit(event="refused", source_null=source_of(event.link.remote_source) is None,
                 condition=c.name if c else None, description=c.description if c else None)
            self._done()
            return
        super().on_link_error(event)

    def on_link_closing(self, event):
        # The broker detached with closed=true before we ended the link: a failure.
        if not self.ending:
            self.fail("the broker detached link %s" % event.link.name)

    def on_link_closed(self, event):
        # Our close, answered.
        if self.ending and not self.finished:
            emit(event="ended", how="close", remote_closed=True)
            self._done()

    def on_link_remote_detach(self, event):
        # A detach with closed=false from the broker: the answer to ours, or a failure.
        if not self.ending:
            self.fail("the broker detached link %s (closed=false)" % event.link.name)
            return
        emit(event="ended", how=self.args.end, remote_closed=False)
        self._done()

    def on_message(self, event):
        if self.ending or self.finished:
            return
        self.count += 1
        m, d = event.message, event.delivery
        props = m.properties or {}
        seq = props.get("seq")
        held = seq in self.hold
        emit(event="msg", seq=seq, body=plain(m.body), subject=m.subject, dc=m.delivery_count,
             settled=bool(d.settled), held=held, t=time.time())
        if not held and not d.settled:
            self.accept(d)
        if self.args.count is not None and self.count == self.args.count:
            self.after(self.args.linger, self._end_link)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("address")
    p.add_argument("--container", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--selector")
    p.add_argument("--credit", type=int, default=200)
    p.add_argument("--hold")
    p.add_argument("--count", type=int)
    p.add_argument("--linger", type=float, default=0.7)
    p.add_argument("--end", choices=("detach", "close"), default="detach")
    p.add_argument("--expect-refusal", action="store_true")
    p.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    run_until_term(Subscriber(args))


if __name__ == "__main__":
    client_main(main)
