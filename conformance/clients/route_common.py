"""Shared by the routing scenarios (16 to 22); not a client program itself.

- `broker_with(...)`: a `harness.Broker` whose config also declares exchanges, queues with
  their policies, `[queues.defaults]` and address rules (harness.render_config only writes
  [broker], [connection], [[listeners]] and [[users]]).
- `write_spec(...)`: the JSON file of messages that `route_rhea_send.js` sends.
- Readers for the JSON lines of `route_proton_recv.py` and `route_rhea_recv.js`.
"""

import json
import os

import harness
from harness import Broker, _toml_value, check, messages_of


def _table(header, rows):
    out = []
    for row in rows:
        out.append(header)
        out.extend("%s = %s" % (k, _toml_value(v)) for k, v in row.items())
        out.append("")
    return out


def broker_with(workdir, exchanges=(), queues=(), defaults=None, bindings=(), rules=(), **kw):
    """A Broker (keyword arguments as harness.Broker) with `[[exchanges]]`,
    `[[queues.declare]]`, `[queues.defaults]`, `[[bindings]]` and `[[address_rules]]` added
    to its config: each a dict of key -> value (or a list of them)."""
    extra = []
    if defaults:
        extra += _table("[queues.defaults]", [defaults])
    extra += _table("[[queues.declare]]", queues)
    extra += _table("[[exchanges]]", exchanges)
    extra += _table("[[bindings]]", bindings)
    extra += _table("[[address_rules]]", rules)
    text = "\n".join(extra)
    original = harness.render_config

    def render(*a, **k):
        return original(*a, **k) + "\n" + text + "\n"

    harness.render_config = render  # Broker.__init__ writes the file and starts the process
    try:
        return Broker(workdir, **kw)
    finally:
        harness.render_config = original


def write_spec(workdir, name, messages):
    """Writes a list of message dicts for route_rhea_send.js; returns the file's path."""
    path = os.path.join(workdir, "%s.json" % name)
    with open(path, "w") as f:
        json.dump(list(messages), f)
    return path


def seqs(child):
    """The `seq` application-property of every message a route_* receiver printed, in order."""
    return [m["seq"] for m in messages_of(child)]


def check_exactly(child, expected, what):
    """The receiver got exactly `expected` (a list of seqs), in that order, once each."""
    got = seqs(child)
    if got == list(expected):
        return
    extra = [s for s in got if s not in set(expected)]
    missing = [s for s in expected if s not in set(got)]
    dups = sorted({s for s in got if got.count(s) > 1})
    check(False, "%s: expected %d messages %s, got %d: missing %s, unexpected %s, duplicated %s, "
          "first out-of-order positions %s"
          % (what, len(expected), _short(expected), len(got), _short(missing), _short(extra),
             _short(dups), _short([(i, a, b) for i, (a, b) in enumerate(zip(got, expected))
                                  if a != b])))


def _short(xs, n=12):
    xs = list(xs)
    return repr(xs) if len(xs) <= n else "%s … (%d in all)" % (repr(xs[:n])[:-1], len(xs))
