"""An oslo.messaging RPC server process (threading executor) on the AMQP 1.0 driver.

Endpoint methods:
  echo(value)  returns {"server": NAME, "value": value}    (for RPCClient.call)
  note(tag)    returns nothing                             (for casts)

JSON lines:
  {"event":"link","address":A}           one of the server's three receiver links is attached
  {"event":"ready","addresses":[...]}    all three are
  {"event":"call","server":NAME,"value":V} / {"event":"cast","server":NAME,"tag":T}
  {"event":"stopped"}                    on SIGTERM, after the server and transport stopped
  {"error":...}                          anything the driver complained about (oslo_common)

usage: oslo_server.py CONFIG_FILE TOPIC SERVER_NAME [--timeout SECONDS]
"""

import argparse
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oslo_common  # noqa: E402  (first: it sets up warnings and the driver watch)
import oslo_messaging  # noqa: E402

LINKS = 3  # unicast (this server), multicast (fanout), anycast (the topic's shared queue)


class Endpoint:
    def __init__(self, name):
        self.name = name

    def echo(self, ctxt, value):
        oslo_common.emit(event="call", server=self.name, value=value)
        return {"server": self.name, "value": value}

    def note(self, ctxt, tag):
        oslo_common.emit(event="cast", server=self.name, tag=tag)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("config_file")
    p.add_argument("topic")
    p.add_argument("server")
    p.add_argument("--timeout", type=float, default=240.0)
    args = p.parse_args()

    links = oslo_common.Links(LINKS)
    oslo_common.watch_driver(on_link=links.add)
    conf = oslo_common.load_conf(args.config_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())

    transport = oslo_messaging.get_rpc_transport(conf)
    target = oslo_messaging.Target(topic=args.topic, server=args.server)
    server = oslo_messaging.get_rpc_server(transport, target, [Endpoint(args.server)],
                                           executor="threading")
    server.start()
    try:
        links.wait(20)
        if not stop.wait(args.timeout):
            raise RuntimeError("not stopped within %.0fs" % args.timeout)
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
    oslo_common.emit(event="stopped")


if __name__ == "__main__":
    oslo_common.main(main)
