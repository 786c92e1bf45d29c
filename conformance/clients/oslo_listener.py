"""An oslo.messaging notification listener process (threading executor) on the AMQP 1.0
driver, for the priorities info, warn and error of one topic.

JSON lines:
  {"event":"link","address":A}     one of its receiver links (one per priority) is attached
  {"event":"ready","addresses":[...]}   all three are
  {"event":"notification","priority":P,"publisher_id":...,"event_type":...,"payload":...}
  {"event":"stopped"}              on SIGTERM, after the listener and transport stopped
  {"error":...}                    anything the driver complained about (oslo_common)

usage: oslo_listener.py CONFIG_FILE TOPIC [--timeout SECONDS]
"""

import argparse
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oslo_common  # noqa: E402  (first: it sets up warnings and the driver watch)
import oslo_messaging  # noqa: E402

PRIORITIES = ("info", "warn", "error")  # the Endpoint's methods: one receiver link each


class Endpoint:
    def _got(self, priority, publisher_id, event_type, payload):
        oslo_common.emit(event="notification", priority=priority, publisher_id=publisher_id,
                         event_type=event_type, payload=payload)
        return oslo_messaging.NotificationResult.HANDLED

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._got("info", publisher_id, event_type, payload)

    def warn(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._got("warn", publisher_id, event_type, payload)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._got("error", publisher_id, event_type, payload)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("config_file")
    p.add_argument("topic")
    p.add_argument("--timeout", type=float, default=240.0)
    args = p.parse_args()

    links = oslo_common.Links(len(PRIORITIES))
    oslo_common.watch_driver(on_link=links.add)
    conf = oslo_common.load_conf(args.config_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())

    transport = oslo_messaging.get_notification_transport(conf)
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=args.topic)], [Endpoint()], executor="threading")
    listener.start()
    try:
        links.wait(20)
        if not stop.wait(args.timeout):
            raise RuntimeError("not stopped within %.0fs" % args.timeout)
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    oslo_common.emit(event="stopped")


if __name__ == "__main__":
    oslo_common.main(main)
