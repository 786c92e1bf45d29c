"""An oslo.messaging client process on the AMQP 1.0 driver: RPC calls, calls to named
servers, a fanout cast and notifications, in that order, each bounded.

  1. CALLS × RPCClient.call(echo) to the topic (any server), the client from get_rpc_client;
  2. one call to each named server (Target server=NAME);
  3. one cast with fanout=True (note(tag=TAG));
  4. Notifier(topics=[NOTIFY_TOPIC]).info and .error, event type EVENT_TYPE.

Nothing is retried (retry=0): a released or modified message fails the step.

JSON lines:
  {"event":"reply","step":"call"|"call-server","target_server":S|null,"value":V,"reply":R}
  {"event":"cast-sent","tag":TAG}
  {"event":"notified","priority":P,"event_type":E,"payload":X}
  {"event":"done"}        after the transport is cleaned up
  {"error":...}           an exception, or anything the driver complained about

usage: oslo_client.py CONFIG_FILE TOPIC --servers A,B --calls N --tag TAG
                      --notify-topic T --event-type E --label L
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oslo_common  # noqa: E402  (first: it sets up warnings and the driver watch)
import oslo_messaging  # noqa: E402

CALL_TIMEOUT = 10  # seconds, for each RPC call (oslo raises MessagingTimeout after it)


def rpc_steps(transport, args):
    emit = oslo_common.emit
    target = oslo_messaging.Target(topic=args.topic)
    client = oslo_messaging.get_rpc_client(transport, target, timeout=CALL_TIMEOUT, retry=0)
    for i in range(args.calls):
        value = "%s-any-%d" % (args.label, i)
        reply = client.call({}, "echo", value=value)
        emit(event="reply", step="call", target_server=None, value=value, reply=reply)
    for name in args.servers.split(","):
        value = "%s-to-%s" % (args.label, name)
        reply = client.prepare(server=name).call({}, "echo", value=value)
        emit(event="reply", step="call-server", target_server=name, value=value, reply=reply)
    client.prepare(fanout=True).cast({}, "note", tag=args.tag)
    emit(event="cast-sent", tag=args.tag)


def notify_steps(transport, args):
    notifier = oslo_messaging.Notifier(transport, publisher_id="ferry.s15", driver="messaging",
                                       topics=[args.notify_topic], retry=0)
    for priority in ("info", "error"):
        payload = {"label": args.label, "priority": priority, "n": 42}
        getattr(notifier, priority)({}, args.event_type, payload)
        oslo_common.emit(event="notified", priority=priority, event_type=args.event_type,
                         payload=payload)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("config_file")
    p.add_argument("topic")
    p.add_argument("--servers", required=True)
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--tag", required=True)
    p.add_argument("--notify-topic", required=True)
    p.add_argument("--event-type", required=True)
    p.add_argument("--label", required=True)
    args = p.parse_args()

    oslo_common.watch_driver()
    conf = oslo_common.load_conf(args.config_file)
    rpc = oslo_messaging.get_rpc_transport(conf)
    try:
        rpc_steps(rpc, args)
    finally:
        rpc.cleanup()
    notify = oslo_messaging.get_notification_transport(conf)
    try:
        notify_steps(notify, args)
    finally:
        notify.cleanup()
    oslo_common.emit(event="done")


if __name__ == "__main__":
    oslo_common.main(main)
