#!/usr/bin/python3
"""Record AMQP 1.0 byte vectors from Qpid Proton's Python binding.

Run with Debian's interpreter (python3-qpid-proton installs for it):

    /usr/bin/python3 record_proton.py OUTPUT.vectors

* value / message / section / state vectors come from proton's encoders
  (proton.Data put_* + encode(), proton.Message.encode()).
* frame / sasl-frame / protocol-header vectors are cut from the bytes that
  a proton client and a proton server (both in this process, on 127.0.0.1)
  exchanged through a logging TCP proxy (wiretap.py).
"""

import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import proton  # noqa: E402
from proton import (  # noqa: E402
    UNDESCRIBED, Array, Condition, Data, Delivery, Described, Message, Terminus, byte, char,
    decimal128, float32, int32, short, symbol, timestamp,
    ubyte, uint, ulong, ushort,
)
from proton.handlers import MessagingHandler  # noqa: E402
from proton.reactor import (  # noqa: E402
    AtMostOnce, Container, DynamicNodeProperties, LinkOption, Selector,
)

from vectorlib import VectorFile  # noqa: E402
from wiretap import Tap, free_port  # noqa: E402

SCENARIO_TIMEOUT = 20.0  # seconds; every scenario is stopped after this

FIXED_UUID = uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
TXN_IDS = [b"txn-0001", b"txn-0002"]


# ---------------------------------------------------------------------------
# proton.Data helpers

def encode(*puts):
    """Build one value with proton.Data and return its encoding."""
    d = Data()
    for p in puts:
        p(d)
    return d.encode()


def obj(o):
    """Encode a python object through Data.put_object."""
    d = Data()
    d.put_object(o)
    return d.encode()


def put_array(element_type, values, described=False, descriptor=None):
    def put(d):
        d.put_array(described, element_type)
        d.enter()
        if described:
            d.put_object(descriptor)
        for v in values:
            if callable(v):
                v(d)
            else:
                d.put_object(v)
        d.exit()
    return put


def put_list(*items):
    def put(d):
        d.put_list()
        d.enter()
        for v in items:
            if callable(v):
                v(d)
            else:
                d.put_object(v)
        d.exit()
    return put


def put_map(pairs):
    def put(d):
        d.put_map()
        d.enter()
        for k, v in pairs:
            for x in (k, v):
                if callable(x):
                    x(d)
                else:
                    d.put_object(x)
        d.exit()
    return put


def put_described(descriptor, value):
    def put(d):
        d.put_described()
        d.enter()
        d.put_object(descriptor)
        if callable(value):
            value(d)
        else:
            d.put_object(value)
        d.exit()
    return put


def text(n):
    """Non-repeating filler, so the frames of a multi-frame transfer differ."""
    out = []
    i = 0
    while sum(len(x) for x in out) < n:
        out.append("%05d " % i)
        i += 1
    return "".join(out)[:n]


def split_sections(data):
    """Split an encoded message into its sections using proton's decoder."""
    out = []
    pos = 0
    while pos < len(data):
        d = Data()
        n = d.decode(data[pos:])
        d.rewind()
        d.next()
        o = d.get_object()
        out.append((o.descriptor, data[pos:pos + n]))
        pos += n
    return out


SECTION_NAMES = {
    0x70: "header", 0x71: "delivery-annotations", 0x72: "message-annotations",
    0x73: "properties", 0x74: "application-properties", 0x75: "data",
    0x76: "amqp-sequence", 0x77: "amqp-value", 0x78: "footer",
}


# ---------------------------------------------------------------------------
# value vectors

def record_values(vf):
    vf.comment("")
    vf.comment("---- values: proton.Data put_*() then encode() ----")
    V = lambda name, *puts, note=None: vf.add("value", name, encode(*puts), note=note)  # noqa: E731

    V("null", lambda d: d.put_null())
    V("boolean.true", lambda d: d.put_bool(True))
    V("boolean.false", lambda d: d.put_bool(False))
    V("ubyte.0", lambda d: d.put_ubyte(0))
    V("ubyte.255", lambda d: d.put_ubyte(255))
    V("ushort.0", lambda d: d.put_ushort(0))
    V("ushort.65535", lambda d: d.put_ushort(65535))
    V("uint.0", lambda d: d.put_uint(0))
    V("uint.small.1", lambda d: d.put_uint(1))
    V("uint.small.255", lambda d: d.put_uint(255))
    V("uint.256", lambda d: d.put_uint(256))
    V("uint.max", lambda d: d.put_uint(0xFFFFFFFF))
    V("ulong.0", lambda d: d.put_ulong(0))
    V("ulong.small.1", lambda d: d.put_ulong(1))
    V("ulong.small.255", lambda d: d.put_ulong(255))
    V("ulong.256", lambda d: d.put_ulong(256))
    V("ulong.max", lambda d: d.put_ulong(0xFFFFFFFFFFFFFFFF))
    V("byte.min", lambda d: d.put_byte(-128))
    V("byte.max", lambda d: d.put_byte(127))
    V("short.min", lambda d: d.put_short(-32768))
    V("short.max", lambda d: d.put_short(32767))
    V("int.0", lambda d: d.put_int(0))
    V("int.small.-1", lambda d: d.put_int(-1))
    V("int.small.127", lambda d: d.put_int(127))
    V("int.small.-128", lambda d: d.put_int(-128))
    V("int.128", lambda d: d.put_int(128))
    V("int.-129", lambda d: d.put_int(-129))
    V("int.min", lambda d: d.put_int(-2**31))
    V("int.max", lambda d: d.put_int(2**31 - 1))
    V("long.0", lambda d: d.put_long(0))
    V("long.small.-128", lambda d: d.put_long(-128))
    V("long.small.127", lambda d: d.put_long(127))
    V("long.128", lambda d: d.put_long(128))
    V("long.min", lambda d: d.put_long(-2**63))
    V("long.max", lambda d: d.put_long(2**63 - 1))
    V("float.1.5", lambda d: d.put_float(1.5))
    V("float.-0.1", lambda d: d.put_float(-0.1))
    V("float.inf", lambda d: d.put_float(float("inf")))
    V("double.pi", lambda d: d.put_double(3.141592653589793))
    V("double.-1e300", lambda d: d.put_double(-1e300))
    V("double.-0", lambda d: d.put_double(-0.0))
    V("decimal32", lambda d: d.put_decimal32(0x2238_0001), note="decimal32 raw bits 0x22380001")
    V("decimal64", lambda d: d.put_decimal64(0x2238_0000_0000_0001), note="decimal64 raw bits")
    V("decimal128", lambda d: d.put_decimal128(decimal128(bytes(range(0x30, 0x40)))), note="decimal128 raw bytes 30..3f")
    V("char.a", lambda d: d.put_char("a"))
    V("char.e-acute", lambda d: d.put_char("\u00e9"))
    V("char.emoji", lambda d: d.put_char("\U0001F600"))
    V("timestamp.0", lambda d: d.put_timestamp(0))
    V("timestamp.2023", lambda d: d.put_timestamp(1700000000123), note="2023-11-14T22:13:20.123Z")
    V("timestamp.negative", lambda d: d.put_timestamp(-1000))
    V("uuid", lambda d: d.put_uuid(FIXED_UUID), note=str(FIXED_UUID))
    V("binary.empty", lambda d: d.put_binary(b""))
    V("binary.vbin8", lambda d: d.put_binary(b"\x00\x01\x02\xfe\xff"))
    V("binary.vbin32", lambda d: d.put_binary(bytes(i % 256 for i in range(300))), note="300 bytes 00 01 .. ff 00 ..")
    V("string.empty", lambda d: d.put_string(""))
    V("string.ascii", lambda d: d.put_string("hello world"))
    V("string.utf8", lambda d: d.put_string("gr\u00fc\u00dfe \u20ac \u65e5\u672c \U0001F600"), note="non-ASCII UTF-8")
    V("string.str32", lambda d: d.put_string("\u00e9" * 150), note="150 x U+00E9 = 300 UTF-8 bytes")
    V("symbol.empty", lambda d: d.put_symbol(""))
    V("symbol.sym8", lambda d: d.put_symbol("amqp:accepted:list"))
    V("symbol.sym32", lambda d: d.put_symbol("s" * 300))

    vf.comment("lists / maps (proton always uses list32/map32 except list0 for an empty list)")
    V("list.empty", lambda d: d.put_list())
    V("list.mixed", put_list(int32(1), "two", symbol("three"), None, True, ulong(5), 2.5))
    V("list.nested", put_list(put_list(), put_list(uint(1), put_list(ubyte(2))), put_map([(symbol("k"), "v")])))
    V("list.list32", put_list(*["item-%03d" % i for i in range(40)]), note="40 strings, > 255 bytes")
    V("map.empty", lambda d: d.put_map())
    V("map.mixed-keys", put_map([("string-key", int32(1)), (symbol("symbol-key"), "v"), (ulong(7), None),
                                 (int32(-3), True), (FIXED_UUID, b"bin")]))
    V("map.nested", put_map([(symbol("inner"), put_map([(symbol("a"), put_list(int32(1), int32(2)))]))]))
    V("map.map32", put_map([(symbol("key-%02d" % i), "value-%02d" % i) for i in range(30)]), note="30 entries, > 255 bytes")

    vf.comment("arrays (proton always uses array32)")
    V("array.int", put_array(Data.INT, [int32(1), int32(-2), int32(300)]))
    V("array.int.empty", put_array(Data.INT, []))
    V("array.uint", put_array(Data.UINT, [uint(0), uint(1), uint(70000)]))
    V("array.ulong", put_array(Data.ULONG, [ulong(0), ulong(1), ulong(2**40)]))
    V("array.long", put_array(Data.LONG, [-1, 2**40]))
    V("array.boolean", put_array(Data.BOOL, [True, False, True]), note="booleans inside an array use 0x56")
    V("array.ubyte", put_array(Data.UBYTE, [ubyte(1), ubyte(255)]))
    V("array.double", put_array(Data.DOUBLE, [1.0, -2.5]))
    V("array.timestamp", put_array(Data.TIMESTAMP, [timestamp(0), timestamp(1700000000123)]))
    V("array.uuid", put_array(Data.UUID, [FIXED_UUID, uuid.UUID(int=1)]))
    V("array.symbol", put_array(Data.SYMBOL, [symbol("amqp:accepted:list"), symbol("amqp:rejected:list")]))
    V("array.string", put_array(Data.STRING, ["a", "\u00e9t\u00e9", ""]))
    V("array.binary", put_array(Data.BINARY, [b"\x01\x02", b""]))
    V("array.string.array32", put_array(Data.STRING, ["element-%03d" % i for i in range(30)]), note="30 strings, > 255 bytes")
    V("array.list", put_array(Data.LIST, [put_list(int32(1)), put_list()]))
    V("array.map", put_array(Data.MAP, [put_map([(symbol("a"), int32(1))])]))
    V("array.described.numeric", put_array(Data.LIST, [put_list(), put_list()], described=True, descriptor=ulong(0x24)),
      note="array of two accepted outcomes (descriptor 0x24 shared by all elements)")
    V("array.described.symbolic", put_array(Data.STRING, ["x", "y"], described=True, descriptor=symbol("example:str")))
    V("array.nested", put_array(Data.ARRAY, [put_array(Data.INT, [int32(1), int32(2)]),
                                             put_array(Data.INT, [int32(3)])]),
      note="array of arrays of int")
    V("described.numeric.list", put_described(ulong(0x24), put_list()), note="accepted")
    V("described.numeric.string", put_described(ulong(0x468C00000004), "color = 'red'"),
      note="apache.org:selector-filter:string with its numeric descriptor")
    V("described.symbolic.string", put_described(symbol("apache.org:selector-filter:string"), "color = 'red'"))
    V("described.symbolic.map", put_described(symbol("example:described:map"), put_map([(symbol("a"), int32(1))])))
    V("described.nested", put_described(symbol("outer"), put_described(ulong(1), "inner")))

    vf.comment("transaction bodies and the coordinator target, encoded with proton.Data")
    V("txn.declare", put_described(ulong(0x31), put_list()), note="declare with no global-id")
    V("txn.declare.symbolic", put_described(symbol("amqp:declare:list"), put_list(None)),
      note="what proton's Transaction.declare() puts in its amqp-value body")
    V("txn.discharge.commit", put_described(ulong(0x32), put_list(TXN_IDS[0], False)))
    V("txn.discharge.rollback", put_described(ulong(0x32), put_list(TXN_IDS[0], True)))
    V("txn.declared", put_described(ulong(0x33), put_list(TXN_IDS[0])))
    V("txn.coordinator", put_described(ulong(0x30), put_list(
        put_array(Data.SYMBOL, [symbol("amqp:local-transactions"), symbol("amqp:multi-txns-per-ssn")]))))


# ---------------------------------------------------------------------------
# delivery states

def error_value(condition, description, info):
    return put_described(ulong(0x1D), put_list(symbol(condition), description, put_map(info)))


def record_states(vf):
    vf.comment("")
    vf.comment("---- delivery states encoded with proton.Data ----")
    S = lambda name, put, note=None: vf.add("state", name, encode(put), note=note)  # noqa: E731
    S("state.accepted", put_described(ulong(0x24), put_list()))
    S("state.rejected.empty", put_described(ulong(0x25), put_list()))
    S("state.rejected", put_described(ulong(0x25), put_list(error_value(
        "amqp:not-allowed", "the message was rejected", [(symbol("field"), "subject"), (symbol("code"), int32(42))]))))
    S("state.released", put_described(ulong(0x26), put_list()))
    S("state.modified.empty", put_described(ulong(0x27), put_list()))
    S("state.modified", put_described(ulong(0x27), put_list(True, True, put_map([
        (symbol("x-opt-reason"), "retry"), (symbol("x-opt-count"), int32(3))]))))
    S("state.received", put_described(ulong(0x23), put_list(uint(2), ulong(1024))))
    S("state.received.zero", put_described(ulong(0x23), put_list(uint(0), ulong(0))))
    S("state.transactional.accepted", put_described(ulong(0x34), put_list(
        TXN_IDS[0], put_described(ulong(0x24), put_list()))))
    S("state.transactional.no-outcome", put_described(ulong(0x34), put_list(TXN_IDS[0])))
    S("state.declared", put_described(ulong(0x33), put_list(TXN_IDS[1])),
      note="declared is also a delivery state (the coordinator's reply to declare)")
    S("state.accepted.symbolic", put_described(symbol("amqp:accepted:list"), put_list()))


# ---------------------------------------------------------------------------
# messages and sections

def full_message():
    m = Message()
    m.durable = True
    m.priority = 7
    m.ttl = 60.0  # seconds in the python API -> 60000 ms on the wire
    m.first_acquirer = True
    m.delivery_count = 3
    m.instructions = {symbol("x-opt-delivery-hint"): "fast", symbol("x-opt-n"): int32(1)}
    m.annotations = {symbol("x-opt-partition"): int32(3), symbol("x-opt-origin"): "broker-1"}
    m.id = ulong(12345)
    m.user_id = b"guest"
    m.address = "queue://orders"
    m.subject = "order-created"
    m.reply_to = "queue://replies"
    m.correlation_id = "corr-7"
    m.content_type = symbol("application/json")
    m.content_encoding = symbol("utf-8")
    m.expiry_time = 1700000060.0
    m.creation_time = 1700000000.0
    m.group_id = "group-a"
    m.group_sequence = 9
    m.reply_to_group_id = "group-r"
    m.properties = {"str": "s", "int": int32(-5), "long": 2**40, "bool": True, "double": 1.25,
                    "null": None, "uuid": FIXED_UUID, "bin": b"\x00\xff", "ts": timestamp(1700000000000),
                    "sym": symbol("sym"), "ubyte": ubyte(8), "short": short(-2), "char": char("c"),
                    "float": float32(0.5)}
    m.body = '{"order": 1}'
    return m


def record_messages(vf):
    vf.comment("")
    vf.comment("---- messages: proton.Message(...).encode() ----")
    msgs = []
    m = full_message()
    msgs.append(("message.full.amqp-value", m, "all sections proton's Message supports; message-id ulong"))
    for kind, mid in (("ulong", ulong(7)), ("uuid", FIXED_UUID), ("binary", b"\x01\x02\x03"),
                      ("string", "id-string")):
        m = Message(body="id test")
        m.id = mid
        m.correlation_id = mid
        msgs.append(("message.id." + kind, m, "message-id and correlation-id of type " + kind))
    m = Message(body=b"\x00\x01binary payload")
    m.inferred = True
    msgs.append(("message.body.data", m, "binary body with inferred=True -> one data section"))
    m = Message(body=[int32(1), "two", symbol("three")])
    m.inferred = True
    msgs.append(("message.body.amqp-sequence", m, "list body with inferred=True -> one amqp-sequence section"))
    m = Message(body=[int32(1), "two"])
    msgs.append(("message.body.amqp-value.list", m, "list body with inferred=False -> amqp-value(list)"))
    m = Message(body={"k": "v", "n": int32(1)})
    msgs.append(("message.body.amqp-value.map", m, None))
    m = Message(body=None)
    msgs.append(("message.body.null", m, "no body"))
    m = Message(body=b"raw")
    msgs.append(("message.body.amqp-value.binary", m, "binary body with inferred=False -> amqp-value(binary)"))
    m = Message(body=Described(symbol("amqp:declare:list"), [None]))
    msgs.append(("message.txn.declare", m, "body proton's Transaction.declare() sends"))
    m = Message(body="x" * 300, durable=True)
    msgs.append(("message.body.str32", m, None))

    for name, m, note in msgs:
        data = m.encode()
        vf.add("message", name, data, note=note)

    vf.comment("")
    vf.comment("---- sections: the sections of message.full.amqp-value, split with proton's decoder ----")
    for desc, data in split_sections(full_message().encode()):
        vf.add("section", "section.full." + SECTION_NAMES[int(desc)], data)

    vf.comment("")
    vf.comment("---- sections proton's Message cannot produce, built with proton.Data ----")
    sec = lambda code, value: encode(put_described(ulong(code), value))  # noqa: E731
    header = sec(0x70, put_list(True, ubyte(9), uint(1000), True, uint(5)))
    da = sec(0x71, put_map([(symbol("x-opt-trace"), "t1")]))
    ma = sec(0x72, put_map([(symbol("x-opt-jms-dest"), byte(0)), (ulong(99), "numeric key")]))
    props = sec(0x73, put_list(FIXED_UUID, b"user", "to", "subject", "reply-to", b"\xca\xfe",
                               symbol("text/plain"), symbol("gzip"), timestamp(1700000060000),
                               timestamp(1700000000000), "group", uint(4), "reply-group"))
    ap = sec(0x74, put_map([("a", int32(1)), ("b", "two"), ("c", None)]))
    data1 = sec(0x75, b"first data section ")
    data2 = sec(0x75, b"second data section")
    seq1 = sec(0x76, put_list(int32(1), int32(2)))
    seq2 = sec(0x76, put_list("three"))
    value = sec(0x77, "amqp-value body")
    footer = sec(0x78, put_map([(symbol("x-opt-checksum"), "abc123"), (symbol("x-opt-n"), ulong(2))]))
    vf.add("section", "section.header.all-fields", header)
    vf.add("section", "section.header.empty", sec(0x70, put_list()))
    vf.add("section", "section.delivery-annotations", da)
    vf.add("section", "section.message-annotations.mixed-keys", ma)
    vf.add("section", "section.properties.uuid-id", props, note="all 13 properties fields, message-id uuid, correlation-id binary")
    vf.add("section", "section.application-properties", ap)
    vf.add("section", "section.data", data1)
    vf.add("section", "section.amqp-sequence", seq1)
    vf.add("section", "section.amqp-value", value)
    vf.add("section", "section.footer", footer)
    vf.add("message", "message.data.two-sections", header + props + data1 + data2 + footer,
           note="header, properties, two data sections, footer")
    vf.add("message", "message.amqp-sequence.two-sections", header + da + ma + ap + seq1 + seq2 + footer,
           note="every section kind except properties, body = two amqp-sequence sections")
    vf.add("message", "message.all-sections.amqp-value", header + da + ma + props + ap + value + footer)


# ---------------------------------------------------------------------------
# wire scenarios

class Stepper:
    """Runs fn_list one by one, `gap` seconds apart, on the container's timer."""

    def __init__(self, container, steps, gap=0.25):
        self.container = container
        self.steps = list(steps)
        self.gap = gap
        container.schedule(gap, self)

    def on_timer_task(self, event):
        if self.steps:
            step = self.steps.pop(0)
            step()
            if self.steps:
                self.container.schedule(self.gap, self)


class Stopper:
    def __init__(self, container):
        self.container = container

    def on_timer_task(self, event):
        self.container.stop()


class TerminusOptions(LinkOption):
    def __init__(self, fn):
        self.fn = fn

    def apply(self, link):
        self.fn(link)


class Server(MessagingHandler):
    """A tiny in-process proton server: accepts every link, answers
    messages according to their subject, and plays a transaction
    coordinator."""

    def __init__(self, sasl=True, max_frame_size=None, idle_timeout=None, outgoing=()):
        super().__init__(prefetch=10, auto_accept=False, auto_settle=True)
        self.sasl = sasl
        self.max_frame_size = max_frame_size
        self.idle_timeout = idle_timeout
        self.outgoing = list(outgoing)  # messages to send on the first sending link
        self.acceptor = None
        self.held = []
        self.txn_counter = 0

    # Peers close links/sessions/connections with error conditions on
    # purpose; proton's default reaction (close the whole connection) would
    # cut the scenario short.
    def on_link_error(self, event):
        pass

    def on_session_error(self, event):
        pass

    def on_connection_error(self, event):
        pass

    def on_connection_init(self, event):
        event.connection.container = "ferry-proton-server"

    def on_connection_bound(self, event):
        t = event.transport
        if self.sasl:
            s = t.sasl()
            s.allowed_mechs("ANONYMOUS")
        if self.max_frame_size:
            t.max_frame_size = self.max_frame_size
        if self.idle_timeout:
            t.idle_timeout = self.idle_timeout

    def on_link_opening(self, event):
        link = event.link
        if link.remote_source.dynamic:
            link.source.copy(link.remote_source)
            link.source.address = "dynamic-queue-0001"
        else:
            link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)

    def on_link_remote_detach(self, event):
        event.link.detach()

    def on_link_flow(self, event):
        link = event.link
        if link.is_sender and link.drain_mode and not self.outgoing:
            link.drained()

    def on_sendable(self, event):
        snd = event.sender
        if snd.drain_mode and not self.outgoing:
            snd.drained()
            return
        while self.outgoing and snd.credit > 0:
            msg = self.outgoing.pop(0)
            snd.send(msg)

    def on_message(self, event):
        dlv = event.delivery
        link = event.link
        msg = event.message
        if link.target.type == Terminus.COORDINATOR or (link.remote_target and link.remote_target.type == Terminus.COORDINATOR):
            body = msg.body
            if str(body.descriptor) in ("amqp:declare:list", "49"):
                dlv.local.data = [TXN_IDS[self.txn_counter % 2]]
                self.txn_counter += 1
                dlv.update(0x33)  # declared
            else:
                dlv.update(Delivery.ACCEPTED)
            dlv.settle()
            return
        if dlv.remote_state == 0x34:
            txn = dlv.remote.data[0] if dlv.remote.data else TXN_IDS[0]
            dlv.local.data = [txn, Described(ulong(0x24), [])]
            dlv.update(0x34)
            dlv.settle()
            return
        if dlv.settled:
            return
        subject = msg.subject
        if subject == "reject":
            dlv.local.condition = Condition("amqp:precondition-failed", "server rejected the message",
                                            {symbol("reason"): "test", symbol("code"): int32(7)})
            dlv.update(Delivery.REJECTED)
            dlv.settle()
        elif subject == "release":
            dlv.update(Delivery.RELEASED)
            dlv.settle()
        elif subject == "modify":
            dlv.local.failed = True
            dlv.local.undeliverable = True
            dlv.local.annotations = {symbol("x-opt-modified-by"): "server"}
            dlv.update(Delivery.MODIFIED)
            dlv.settle()
        elif subject == "received":
            dlv.local.section_number = 1
            dlv.local.section_offset = 17
            dlv.update(Delivery.RECEIVED)
            self.held.append(dlv)
        elif subject == "finish":
            for held in self.held:
                held.update(Delivery.ACCEPTED)
                held.settle()
            self.held = []
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
        else:
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()

    def on_connection_closed(self, event):
        if self.acceptor:
            self.acceptor.close()

    def on_transport_closed(self, event):
        if self.acceptor:
            self.acceptor.close()


class Client(MessagingHandler):
    def __init__(self):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        self.conn = None
        self.container = None

    # Peers close links/sessions/connections with error conditions on
    # purpose; proton's default reaction (close the whole connection) would
    # cut the scenario short.
    def on_link_error(self, event):
        pass

    def on_session_error(self, event):
        pass

    def on_connection_error(self, event):
        pass

    def on_connection_closed(self, event):
        event.container.schedule(0.3, Stopper(event.container))

    def on_transport_error(self, event):
        event.container.schedule(0.3, Stopper(event.container))


def run_scenario(name, server, client, **connect_kwargs):
    port = free_port()
    container = Container(server)
    container.container_id = "ferry-proton-client"
    server.acceptor = container.listen("127.0.0.1:%d" % port)
    tap = Tap(port, timeout=SCENARIO_TIMEOUT)
    client.container = container
    client.conn = container.connect("127.0.0.1:%d" % tap.port, handler=client, reconnect=False,
                                    **connect_kwargs)
    container.schedule(SCENARIO_TIMEOUT, Stopper(container))
    container.run()
    events = tap.close()
    sys.stderr.write("proton scenario %s: %d chunks\n" % (name, len(events)))
    return events


# -- scenario "session": SASL ANONYMOUS, every link option, dispositions, drain, detach, errors

class SessionClient(Client):
    def on_connection_opened(self, event):
        conn = event.connection
        c = event.container

        def sender_terminus(link):
            t = link.target
            t.durability = Terminus.DELIVERIES
            t.expiry_policy = Terminus.EXPIRE_NEVER
            t.timeout = 30
            t.capabilities.put_object(symbol("queue"))
            link.source.address = "client-outbox"
            link.max_message_size = 1048576
            link.properties = {symbol("x-opt-link-prop"): "v"}

        def receiver_terminus(link):
            s = link.source
            s.expiry_policy = Terminus.EXPIRE_WITH_LINK
            s.timeout = 5
            s.distribution_mode = Terminus.DIST_MODE_MOVE
            s.outcomes.put_array(False, Data.SYMBOL)
            s.outcomes.enter()
            for o in ("amqp:accepted:list", "amqp:rejected:list", "amqp:released:list", "amqp:modified:list"):
                s.outcomes.put_symbol(o)
            s.outcomes.exit()
            s.capabilities.put_object(symbol("temporary-queue"))
            link.target.address = "client-inbox"

        self.s1 = c.create_sender(conn, target="queue-a", name="sender-unsettled",
                                  options=TerminusOptions(sender_terminus))
        self.s2 = c.create_sender(conn, target="queue-presettled", name="sender-presettled", options=AtMostOnce())
        self.r1 = c.create_receiver(conn, name="receiver-dynamic", dynamic=True, options=[
            Selector("color = 'red' AND size > 10"),
            DynamicNodeProperties({"lifetime-policy": Described(ulong(0x2B), []),
                                   "supported-dist-modes": symbol("move")}),
            TerminusOptions(receiver_terminus)])
        self.r2 = c.create_receiver(conn, source="queue-b", name="receiver-b")
        self.ssn2 = conn.session()
        self.ssn2.open()
        self.received = []

        def send_all():
            for subject in ("accept", "reject", "release", "modify", "received"):
                m = Message(subject=subject, body="message for " + subject)
                m.id = "msg-" + subject
                self.s1.send(m)
            self.s2.send(Message(subject="presettled", body=b"fire and forget", inferred=True))
            self.r2.flow(6)

        def drain():
            self.r1.drain(4)

        def finish():
            self.s1.send(Message(subject="finish", body=None))

        def detach():
            self.s2.detach()
            self.s1.condition = Condition("amqp:link:detach-forced", "sender closed with an error",
                                          {symbol("detail"): "test"})
            self.s1.close()
            self.r1.close()
            self.ssn2.condition = Condition("amqp:session:errant-link", "session ended with an error")
            self.ssn2.close()

        def close():
            self.r2.close()
            conn.condition = Condition("amqp:resource-limit-exceeded", "closing with an error",
                                       {symbol("retry-after"): uint(5)})
            conn.close()

        Stepper(c, [send_all, drain, finish, detach, close], gap=0.3)

    def on_message(self, event):
        dlv = event.delivery
        subject = event.message.subject
        if subject == "reject":
            dlv.local.condition = Condition("amqp:not-allowed", "client rejected", {symbol("why"): "test"})
            dlv.update(Delivery.REJECTED)
        elif subject == "release":
            dlv.update(Delivery.RELEASED)
        elif subject == "modify":
            dlv.local.failed = True
            dlv.local.undeliverable = False
            dlv.local.annotations = {symbol("x-opt-retry"): int32(1)}
            dlv.update(Delivery.MODIFIED)
        elif subject == "received":
            dlv.local.section_number = 0
            dlv.local.section_offset = 3
            dlv.update(Delivery.RECEIVED)
            return  # leave unsettled
        else:
            dlv.update(Delivery.ACCEPTED)
        dlv.settle()


def server_messages():
    out = []
    m = full_message()
    m.subject = "accept"
    out.append(m)
    for subject in ("reject", "release", "modify", "received"):
        out.append(Message(subject=subject, body=[int32(1), int32(2)], inferred=True))
    out.append(Message(subject="accept", body=b"data", inferred=True, id=FIXED_UUID))
    return out


# -- scenario "frames": no SASL, max-frame-size 512, multi-frame transfers, abort

class FramesClient(Client):
    def __init__(self):
        super().__init__()
        self.sent = False

    def on_connection_opened(self, event):
        c = event.container
        conn = event.connection
        self.snd = c.create_sender(conn, target="big", name="big-sender")
        self.rcv = c.create_receiver(conn, source="big-out", name="big-receiver")

        def send_big():
            m = Message(body=text(1400), subject="accept")
            m.properties = {"size": int32(1400)}
            self.snd.send(m)

        def start_abort():
            self.aborting = self.snd.delivery("abort-me")
            payload = Message(body=text(1400)).encode()
            self.snd.stream(payload[:1000])

        def do_abort():
            self.aborting.abort()

        def receive():
            self.rcv.flow(1)

        def close():
            conn.close()

        Stepper(c, [send_big, start_abort, do_abort, receive, close], gap=0.3)

    def on_message(self, event):
        event.delivery.update(Delivery.ACCEPTED)
        event.delivery.settle()


# -- scenario "heartbeat": idle-time-out 1 s, run ~2.5 s, plain close

class HeartbeatClient(Client):
    def on_connection_opened(self, event):
        Stepper(event.container, [lambda: None, lambda: event.connection.close()], gap=1.3)


# -- scenario "txn": proton's transaction client against the coordinator in Server

class TxnClient(Client):
    def __init__(self):
        super().__init__()
        self.round = 0

    def on_connection_opened(self, event):
        c = event.container
        self.snd = c.create_sender(event.connection, target="txn-queue", name="txn-sender")
        self.rcv = c.create_receiver(event.connection, source="txn-source", name="txn-receiver")
        self.txn = c.declare_transaction(event.connection, handler=self)

    def on_transaction_declared(self, event):
        self.round += 1
        if self.round == 1:
            self.txn.send(self.snd, Message(body="sent in a transaction", subject="txn"))
            self.rcv.flow(1)
        else:
            self.txn.abort()

    def on_message(self, event):
        self.txn.accept(event.delivery)
        self.txn.commit()

    def on_transaction_committed(self, event):
        self.txn = event.container.declare_transaction(event.connection, handler=self)

    def on_transaction_aborted(self, event):
        event.connection.close()

    def on_transaction_declare_failed(self, event):
        event.connection.close()

    def on_transaction_commit_failed(self, event):
        event.connection.close()


def record_wire(vf):
    vf.comment("")
    vf.comment("==== wire captures: proton client <-> proton server via a logging TCP proxy ====")
    vf.comment("frame names: frame.proton.SCENARIO.DIRECTION.INDEX.PERFORMATIVE; the index counts the")
    vf.comment("frames of the scenario in the order the proxy saw them complete (both directions).")
    vf.comment("Frames byte-identical to an earlier vector are skipped, so indexes can have gaps.")

    events = run_scenario("session", Server(outgoing=server_messages()), SessionClient(),
                          allowed_mechs="ANONYMOUS", virtual_host="ferry.test",
                          properties={symbol("product"): "ferry-recorder", symbol("version"): "1"},
                          # An Array, not a python list: proton 0.37 encodes a list of
                          # capabilities as an AMQP list (see the quirk scenario).
                          offered_capabilities=Array(UNDESCRIBED, Data.SYMBOL, symbol("ANONYMOUS-RELAY")),
                          desired_capabilities=Array(UNDESCRIBED, Data.SYMBOL, symbol("DELAYED_DELIVERY"),
                                                     symbol("SHARED-SUBS")))
    vf.add_capture("session", events)

    events = run_scenario("frames", Server(sasl=False, max_frame_size=512,
                                           outgoing=[Message(body=text(1300), subject="to-client")]),
                          FramesClient(), sasl_enabled=False, max_frame_size=512)
    vf.add_capture("frames", events)

    events = run_scenario("heartbeat", Server(idle_timeout=1), HeartbeatClient(),
                          allowed_mechs="ANONYMOUS", heartbeat=1)
    vf.add_capture("heartbeat", events)

    events = run_scenario("txn", Server(outgoing=[Message(body="to be accepted in a transaction")]),
                          TxnClient(), allowed_mechs="ANONYMOUS")
    vf.add_capture("txn", events)


class OpenCloseClient(Client):
    def on_connection_opened(self, event):
        event.connection.close()


def record_quirks(qf):
    qf.comment("")
    qf.comment("QUIRK: proton 0.37's python binding encodes connection capabilities given as a python")
    qf.comment("list (the documented way, Container.connect(offered_capabilities=[...])) as an AMQP list")
    qf.comment("of symbols; the spec wants a single symbol or an array of symbols (multiple=\"true\").")
    events = run_scenario("quirk-capabilities-list", Server(sasl=False), OpenCloseClient(), sasl_enabled=False,
                          offered_capabilities=[symbol("ANONYMOUS-RELAY")],
                          desired_capabilities=[symbol("DELAYED_DELIVERY"), symbol("SHARED-SUBS")])
    qf.add_capture("quirk-capabilities-list", events, keep={"c2s.open"})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "proton.vectors")
    quirks_out = sys.argv[2] if len(sys.argv) > 2 else None
    version = ".".join(str(x) for x in proton.VERSION)
    pkg = os.environ.get("PROTON_DEB_VERSION", "")
    preamble = (
        "AMQP 1.0 byte vectors recorded from Qpid Proton (python3-qpid-proton %s, proton.VERSION %s).\n"
        "Generated by codec/tests/vectors/record/record_proton.py - do not edit by hand; see ../README.md.\n"
        "Format: KIND NAME HEX   (lines starting with # are comments)"
    ) % (pkg or "?", version)
    vf = VectorFile("proton", preamble)
    record_values(vf)
    record_states(vf)
    record_messages(vf)
    record_wire(vf)
    counts = vf.write(out)
    print("%s: %s" % (out, counts))
    if quirks_out:
        qf = VectorFile("proton", "Qpid Proton (python3-qpid-proton %s, proton.VERSION %s)." % (pkg or "?", version),
                        qualify_names=True)
        record_quirks(qf)
        print("%s: %s" % (quirks_out, qf.write(quirks_out)))


if __name__ == "__main__":
    main()
