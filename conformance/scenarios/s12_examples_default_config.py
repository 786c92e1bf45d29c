"""Scenario 12: the Proton example flow on the built-in defaults.

The broker starts with no config file at all (`ferry --listen 127.0.0.1:<port>`). A sender
in the style of Proton's simple_send example sends 100 messages to queue `examples`, then a
receiver in the style of simple_recv receives them: both plain MessagingHandlers with the
address in the URL, both must work on the first try (no reconnect), and the receiver gets
{"sequence": 1} … {"sequence": 100} in order.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import Broker, check, check_eq, log, python_client, run_scenario  # noqa: E402

COUNT = 100


def main(workdir):
    broker = Broker(workdir, config=False)
    target = "127.0.0.1:%d/examples" % broker.port
    send = python_client("simple_send", "examples/simple_send.py", [target, COUNT], workdir)
    lines = send.expect_success(30)
    confirmed = [l for l in lines if l.get("event") == "confirmed"]
    check(confirmed, "simple_send did not confirm its messages: %s" % lines)
    check_eq(confirmed[0]["count"], COUNT, "messages simple_send saw accepted")
    check_eq(confirmed[0]["disconnects"], 0, "simple_send disconnects (must work on the first try)")

    recv = python_client("simple_recv", "examples/simple_recv.py", [target, COUNT], workdir)
    lines = recv.expect_success(30)
    msgs = [l for l in lines if l.get("event") == "msg"]
    check_eq([m["body"] for m in msgs], [{"sequence": i} for i in range(1, COUNT + 1)],
             "bodies simple_recv printed")
    check_eq([m["id"] for m in msgs], list(range(1, COUNT + 1)), "message ids simple_recv printed")
    done = [l for l in lines if l.get("event") == "done"]
    check(done and done[0]["disconnects"] == 0, "simple_recv disconnects: %s" % done)
    broker.check_alive()
    log("default config + --listen: simple_send sent %d to 'examples', all accepted; simple_recv "
        "received them in order; no reconnects" % COUNT)


if __name__ == "__main__":
    run_scenario(main)
