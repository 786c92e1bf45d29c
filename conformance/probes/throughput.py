"""Throughput probe (printed, not asserted, not a scenario): 100,000 messages of 1 KiB from one
Proton sender process to one Proton receiver process, running concurrently against one broker.
Rate = messages / (last message received - sender start)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import Broker, check, log, python_client, run_scenario  # noqa: E402

COUNT = 100_000
SIZE = 1024


def main(workdir):
    broker = Broker(workdir)
    address = "probe.throughput"
    recv = python_client("throughput-recv", "throughput_recv.py", [broker.url(), address, COUNT], workdir)
    recv.wait_for(lambda l: l.get("event") == "ready", 20, "the receiver")
    send = python_client("throughput-send", "throughput_send.py", [broker.url(), address, COUNT, SIZE],
                         workdir)
    start = send.wait_for(lambda l: l.get("event") == "start", 20, "the sender")["t"]
    sent = [l for l in send.expect_success(240) if l.get("event") == "done"]
    got = [l for l in recv.expect_success(240) if l.get("event") == "done"]
    check(sent and got, "the probe did not complete: %s / %s" % (sent, got))
    seconds = got[0]["last"] - start
    log("throughput: %d x %d B, 1 Proton sender -> 1 Proton receiver (separate processes): "
        "%.1fs, %.0f msg/s (%.1f MiB/s)"
        % (COUNT, SIZE, seconds, COUNT / seconds, COUNT * SIZE / seconds / 1048576))
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
