"""Shared by the oslo.messaging client processes (oslo_server.py, oslo_listener.py,
oslo_client.py): configuration, JSON lines, and watching the AMQP 1.0 driver.

These run with the venv's python (target/conformance-venv, made by install-oslo.sh), not
/usr/bin/python3. The driver is used exactly as a service would use it: the global
`cfg.CONF` loaded from a config file that holds `transport_url` and
`[oslo_messaging_amqp] addressing_mode`. Two things are only observed, never changed:

- the driver's log: an ERROR or WARNING from `oslo_messaging._drivers.amqp1_driver`, or a
  reconnect, becomes an {"error": ...} line (the driver reconnects by itself, and a silent
  retry must not pass for success);
- pyngus's `receiver_active` callback on the driver's `Server` (the RPC server's and the
  notification listener's links), which the driver leaves empty: each attached link becomes
  {"event": "link", "address": ...}, so a scenario knows the subscriptions exist.
"""

import json
import logging
import sys
import threading
import warnings

warnings.filterwarnings("ignore", message=".*[Ee]ventlet.*")

from oslo_config import cfg  # noqa: E402
from oslo_messaging._drivers.amqp1_driver import controller  # noqa: E402

_out = threading.Lock()


def emit(**obj):
    """One JSON line on stdout (the child-process protocol of harness.Child); any thread."""
    line = json.dumps(obj, separators=(",", ":"), default=str) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def load_conf(config_file):
    """The global CONF, as an OpenStack service loads it: from this file only."""
    cfg.CONF(["--config-file", config_file], project="ferry-s15", default_config_files=[])
    return cfg.CONF


class _DriverWatch(logging.Handler):
    """Turns the driver's complaints and reconnects into error lines."""

    FAILURE_WORDS = ("reconnect", "closed by peer", "socket failure", "connection failure")

    def emit(self, record):
        text = record.getMessage()
        if record.levelno >= logging.WARNING or any(w in text.lower() for w in self.FAILURE_WORDS):
            emit(error="oslo.messaging %s: %s" % (record.levelname, text))
        elif text.startswith("Messaging is active"):
            emit(event="connected", detail=text)


def watch_driver(on_link=None):
    """Logs everything to stderr (kept by the harness) and watches the AMQP 1.0 driver;
    on_link(address) is called (on the driver's thread) for each server link attached."""
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("oslo_messaging._drivers.amqp1_driver").addHandler(_DriverWatch())

    def receiver_active(self, receiver_link):
        emit(event="link", address=receiver_link.source_address)
        if on_link is not None:
            on_link(receiver_link.source_address)

    controller.Server.receiver_active = receiver_active


class Links:
    """Counts a server's attached links; wait() until `want` are."""

    def __init__(self, want):
        self.want = want
        self.addresses = []
        self._all = threading.Event()

    def add(self, address):
        self.addresses.append(address)
        if len(self.addresses) == self.want:
            self._all.set()

    def wait(self, timeout):
        if not self._all.wait(timeout):
            raise RuntimeError("only %d of %d receiver links attached within %.0fs: %s"
                               % (len(self.addresses), self.want, timeout, self.addresses))
        emit(event="ready", addresses=sorted(self.addresses))


def main(fn):
    """Entry point of a client process: an exception becomes an {"error": ...} line, exit 1."""
    try:
        fn()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure is reported the same way
        import traceback
        traceback.print_exc()
        emit(error="%s: %s" % (type(e).__name__, e))
        sys.exit(1)
