"""Scenario 9: every simple AMQP type in application-properties, Proton → rhea and rhea → Proton.

The values (lib/typed_cases.json, "simple"): null, boolean, ubyte, ushort, uint, ulong, byte,
short, int, long, float, double, decimal32/64/128, char, timestamp, uuid, binary, string,
symbol, including extremes (minimum and maximum integers, -0.0, a subnormal double, a
non-BMP char and string, empty and 257-byte binaries). Proton builds them with its typed
wrappers (ubyte, ushort, uint, ulong, byte, short, int32, float32, decimal32/64/128, char,
timestamp, uuid.UUID, symbol); rhea with rhea.types (wrap_* and the Decimal/Uuid
constructors). The receiver checks each value and its AMQP type (rhea: from rhea's own decoder,
which keeps type codes; Proton: from the wrapper class it decodes into).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from amqp_types import build, canon, diff, load_cases  # noqa: E402
from harness import Broker, Failure, check, check_eq, log, node_client, run_scenario  # noqa: E402
from proton import Message  # noqa: E402
from proton_util import ClientError, receive_messages, send_messages  # noqa: E402


def main(workdir):
    broker = Broker(workdir)
    simple, _ = load_cases()
    names = [n for n, _ in simple]

    # Proton → rhea
    address = "s09.proton-to-rhea"
    rhea = node_client("rhea-recv", "rhea_types.js", ["recv", broker.port, address, 1], workdir)
    rhea.wait_for(lambda l: l.get("event") == "ready", 20, "the rhea receiver")
    msg = Message(subject="props", body="typed properties",
                  properties={n: build(c) for n, c in simple})
    try:
        send_messages(broker.url(), address, [msg])
    except ClientError as e:
        raise Failure("Proton sender: %s" % e) from None
    got = [l for l in rhea.expect_success(30) if l.get("event") == "msg"]
    check_eq(len(got), 1, "messages rhea received")
    props = got[0]["props"]
    check(props and props[0] == "map", "rhea found no application-properties map: %s" % got[0])
    keys = [k for k, _ in props[1]]
    check_eq(keys, [["string", n] for n in names], "application-property keys (strings, in order)")
    errors = [d for d in (diff(n, c, v) for (n, c), (_, v) in zip(simple, props[1])) if d]
    check(not errors, "Proton → rhea: %d of %d values differ:\n  %s"
          % (len(errors), len(simple), "\n  ".join(errors)))
    log("Proton → rhea: all %d typed application-properties arrived with their exact types"
        % len(simple))

    # rhea → Proton
    address = "s09.rhea-to-proton"
    node_client("rhea-send", "rhea_types.js", ["send", broker.port, address, "props"],
                workdir).expect_success(30)
    try:
        msgs = receive_messages(broker.url(), address, 1)
    except ClientError as e:
        raise Failure("Proton receiver: %s" % e) from None
    check_eq(len(msgs), 1, "messages Proton received")
    received = msgs[0].properties or {}
    check_eq(list(received.keys()), names, "application-property keys, in order")
    check(all(type(k) is str for k in received), "a key is not a string: %r"
          % [type(k) for k in received])
    errors = [d for d in (diff(n, c, canon(received.get(n))) for n, c in simple) if d]
    check(not errors, "rhea → Proton: %d of %d values differ:\n  %s"
          % (len(errors), len(simple), "\n  ".join(errors)))
    log("rhea → Proton: all %d typed application-properties arrived with their exact types"
        % len(simple))
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
