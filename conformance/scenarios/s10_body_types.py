"""Scenario 10: every type in an amqp-value body, Proton → rhea and rhea → Proton.

One message per case of lib/typed_cases.json (subject = case name): every simple type (as in
scenario 9) as the whole body, then lists, maps with keys of many types, arrays of many element
types (empty, described, and an array of lists), described values with symbol and ulong
descriptors, and a deeply nested structure. Each body must arrive as an amqp-value section
with every value and type exact.

Not sent at the top level: null (Proton omits the body section for a None body) and a
described value (rhea's encoder puts the amqp-value descriptor in place of the value's own);
both appear nested.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from amqp_types import build, canon, diff, load_cases  # noqa: E402
from harness import Broker, Failure, check, check_eq, log, node_client, run_scenario  # noqa: E402
from proton import Message  # noqa: E402
from proton_util import ClientError, receive_messages, send_messages  # noqa: E402


def body_cases():
    simple, compound = load_cases()
    return [(n, c) for n, c in simple if n != "null"] + compound


def main(workdir):
    broker = Broker(workdir)
    cases = body_cases()
    names = [n for n, _ in cases]

    # Proton → rhea
    address = "s10.proton-to-rhea"
    rhea = node_client("rhea-recv", "rhea_types.js", ["recv", broker.port, address, len(cases)], workdir)
    rhea.wait_for(lambda l: l.get("event") == "ready", 20, "the rhea receiver")
    msgs = [Message(subject=n, body=build(c), inferred=False) for n, c in cases]
    try:
        send_messages(broker.url(), address, msgs)
    except ClientError as e:
        raise Failure("Proton sender: %s" % e) from None
    got = [l for l in rhea.expect_success(30) if l.get("event") == "msg"]
    check_eq([l["subject"] for l in got], names, "messages rhea received (by subject, in order)")
    errors = []
    for (n, c), l in zip(cases, got):
        if 0x77 not in l["sections"]:
            errors.append("%s: no amqp-value section (sections %s)" % (n, l["sections"]))
            continue
        d = diff(n, c, l["body"])
        if d:
            errors.append(d)
    check(not errors, "Proton → rhea: %d of %d bodies differ:\n  %s"
          % (len(errors), len(cases), "\n  ".join(errors)))
    log("Proton → rhea: %d amqp-value bodies (every simple type, lists, maps, arrays, described, "
        "nested) arrived with their exact types" % len(cases))

    # rhea → Proton
    address = "s10.rhea-to-proton"
    node_client("rhea-send", "rhea_types.js", ["send", broker.port, address, "body"],
                workdir).expect_success(30)
    try:
        received = receive_messages(broker.url(), address, len(cases))
    except ClientError as e:
        raise Failure("Proton receiver: %s" % e) from None
    check_eq([m.subject for m in received], names, "messages Proton received (by subject, in order)")
    errors = []
    for (n, c), m in zip(cases, received):
        if m.inferred:
            errors.append("%s: body is not an amqp-value section" % n)
            continue
        d = diff(n, c, canon(m.body))
        if d:
            errors.append(d)
    check(not errors, "rhea → Proton: %d of %d bodies differ:\n  %s"
          % (len(errors), len(cases), "\n  ".join(errors)))
    log("rhea → Proton: %d amqp-value bodies arrived with their exact types" % len(cases))
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
