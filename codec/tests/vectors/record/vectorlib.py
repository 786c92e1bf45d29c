"""Shared helpers for the recorders: split captured TCP streams into
protocol headers and frames, and write the `.vectors` text format

    KIND NAME HEX

(see ../README.md).  Also usable as a command line tool that turns the JSON
produced by record_rhea.js into rhea.vectors:

    /usr/bin/python3 vectorlib.py emit rhea.json ../rhea.vectors

Comment lines written next to frames are produced with proton's decoder
(proton.Data) purely as a reading aid; the Rust tests ignore them.
"""

import json
import os
import re
import struct
import sys

NAME_RE = re.compile(r"^[a-z0-9_.-]+$")
KINDS = ("value", "protocol-header", "frame", "sasl-frame", "message", "section", "state")

PERFORMATIVES = {
    0x10: "open", 0x11: "begin", 0x12: "attach", 0x13: "flow", 0x14: "transfer",
    0x15: "disposition", 0x16: "detach", 0x17: "end", 0x18: "close",
    0x40: "sasl-mechanisms", 0x41: "sasl-init", 0x42: "sasl-challenge",
    0x43: "sasl-response", 0x44: "sasl-outcome",
}
SYMBOLIC = {
    "amqp:open:list": 0x10, "amqp:begin:list": 0x11, "amqp:attach:list": 0x12,
    "amqp:flow:list": 0x13, "amqp:transfer:list": 0x14, "amqp:disposition:list": 0x15,
    "amqp:detach:list": 0x16, "amqp:end:list": 0x17, "amqp:close:list": 0x18,
    "amqp:sasl-mechanisms:list": 0x40, "amqp:sasl-init:list": 0x41,
    "amqp:sasl-challenge:list": 0x42, "amqp:sasl-response:list": 0x43,
    "amqp:sasl-outcome:list": 0x44,
}


def descriptor_code(body):
    """Numeric descriptor of the described value at the start of body, or
    None.  Only the descriptor encodings met in practice are handled."""
    if len(body) < 2 or body[0] != 0x00:
        return None
    c = body[1]
    if c == 0x53 and len(body) >= 3:
        return body[2]
    if c == 0x80 and len(body) >= 10:
        return struct.unpack(">Q", body[2:10])[0]
    if c == 0x44:
        return 0
    if c in (0xA3, 0xB3):
        if c == 0xA3:
            n = body[2]
            sym = body[3:3 + n]
        else:
            n = struct.unpack(">I", body[2:6])[0]
            sym = body[6:6 + n]
        return SYMBOLIC.get(sym.decode("ascii", "replace"))
    return None


def split_stream(events):
    """events: [(direction, bytes)] in read order.  Returns the list of
    units [(direction, "protocol-header"|"frame"|"sasl-frame", bytes)] in
    the order in which each unit became complete.  A leftover partial
    unit (connection cut mid-frame) is returned with kind "partial"."""
    buffers = {}
    units = []
    for direction, chunk in events:
        buf = buffers.get(direction, b"") + chunk
        while True:
            if len(buf) >= 4 and buf[:4] == b"AMQP":
                if len(buf) < 8:
                    break
                units.append((direction, "protocol-header", buf[:8]))
                buf = buf[8:]
                continue
            if len(buf) < 8:
                break
            size = struct.unpack(">I", buf[:4])[0]
            if size < 8:
                raise ValueError("bad frame size %d in %s stream" % (size, direction))
            if len(buf) < size:
                break
            frame = buf[:size]
            ftype = frame[5]
            kind = {0: "frame", 1: "sasl-frame"}.get(ftype)
            if kind is None:
                raise ValueError("unknown frame type %d" % ftype)
            units.append((direction, kind, frame))
            buf = buf[size:]
        buffers[direction] = buf
    for direction, buf in buffers.items():
        if buf:
            units.append((direction, "partial", buf))
    return units


def frame_body(frame):
    doff = frame[4]
    return frame[doff * 4:]


def performative_name(frame):
    body = frame_body(frame)
    if not body:
        return "empty"
    code = descriptor_code(body)
    return PERFORMATIVES.get(code, "unknown")


def _proton():
    try:
        import proton  # noqa: F401
        return proton
    except ImportError:
        return None


def describe(data):
    """Human readable rendering of the first AMQP value in data (reading
    aid only).  Returns (text, encoded_length)."""
    proton = _proton()
    if proton is None:
        return ("", None)
    d = proton.Data()
    try:
        n = d.decode(bytes(data))
        d.rewind()
        d.next()
        text = repr(d.get_object())
    except Exception as e:  # noqa: BLE001 - reading aid only
        return ("<undecodable: %s>" % e, None)
    return (text, n)


def transfer_fields(frame):
    """(handle, more, aborted, payload) of a transfer frame, using proton's
    decoder to find where the performative ends."""
    proton = _proton()
    body = frame_body(frame)
    d = proton.Data()
    n = d.decode(bytes(body))
    d.rewind()
    d.next()
    obj = d.get_object()
    fields = list(obj.value) + [None] * 11
    handle, more, aborted = fields[0], bool(fields[5]), bool(fields[9])
    return handle, more, aborted, bytes(body[n:])


class VectorFile:
    def __init__(self, library, preamble, qualify_names=False):
        self.library = library
        self.preamble = preamble
        # In files shared by both libraries (quirks.vectors) every name must
        # say which library produced it.
        self.qualify_names = qualify_names
        self.lines = []
        self.names = set()
        self.seen = set()  # (kind, bytes) already written

    def comment(self, text):
        for line in text.splitlines() or [""]:
            self.lines.append("# " + line if line else "#")

    def add(self, kind, name, data, note=None, dedupe=False):
        if kind not in KINDS:
            raise ValueError("bad kind %r" % kind)
        if self.qualify_names and self.library not in name.split("."):
            name = "%s.%s" % (self.library, name)
        if not NAME_RE.match(name):
            raise ValueError("bad vector name %r" % name)
        data = bytes(data)
        if dedupe and (kind, data) in self.seen:
            return False
        if name in self.names:
            raise ValueError("duplicate vector name %r" % name)
        self.names.add(name)
        self.seen.add((kind, data))
        if note:
            self.comment(note)
        self.lines.append("%s %s %s" % (kind, name, data.hex()))
        return True

    def add_capture(self, scenario, events, describe_frames=True, messages=True, keep=None):
        """Split a captured connection and add every unit.  Frames that
        are byte-identical to an earlier frame of this file are skipped
        (their index is still consumed so the numbering shows the gap).
        keep: if given, a collection of "DIRECTION.PERFORMATIVE" strings;
        only those frames (and no protocol headers) are added."""
        units = split_stream(events)
        self.comment("")
        self.comment("---- wire scenario %r: %d units ----" % (scenario, len(units)))
        index = 0
        pending = {}  # (direction, handle) -> [payload, frames]
        reassembled = {}  # direction -> number of multi-frame messages so far
        for direction, kind, data in units:
            if kind == "partial":
                self.comment("%s: %d trailing bytes of an incomplete frame (connection cut)" % (direction, len(data)))
                continue
            if kind == "protocol-header":
                if keep is not None:
                    continue
                pid = data[4]
                pname = {0: "amqp", 2: "tls", 3: "sasl"}.get(pid, "id%d" % pid)
                self.add("protocol-header", "protocol-header.%s" % pname, data,
                         note="%s protocol header (id %d)" % (direction, pid), dedupe=True)
                continue
            index += 1
            perf = performative_name(data)
            if keep is not None and "%s.%s" % (direction, perf) not in keep:
                continue
            name = "frame.%s.%s.%s.%03d.%s" % (self.library, scenario, direction, index, perf)
            note = None
            if describe_frames:
                body = frame_body(data)
                if body:
                    text, _ = describe(body)
                    note = "%s ch=%d %s: %s" % (direction, struct.unpack(">H", data[6:8])[0], perf, text)
                else:
                    note = "%s empty frame (heartbeat)" % direction
                if len(note) > 400:
                    note = note[:400] + " ..."
            self.add(kind, name, data, note=note, dedupe=True)
            if messages and kind == "frame" and perf == "transfer":
                handle, more, aborted, payload = transfer_fields(data)
                key = (direction, handle)
                acc = pending.setdefault(key, [b"", 0])
                acc[0] += payload
                acc[1] += 1
                if aborted:
                    del pending[key]
                elif not more:
                    full, count = acc
                    del pending[key]
                    if count > 1:
                        # named without the frame index, which can vary with timing
                        nth = reassembled[direction] = reassembled.get(direction, 0) + 1
                        self.add("message", "message.%s.%s.%s.reassembled-%d" % (
                            self.library, scenario, direction, nth), full,
                            note="%s transfer payload reassembled from %d frames (the last is frame %03d)" % (
                                direction, count, index), dedupe=True)

    def write(self, path):
        counts = {}
        for line in self.lines:
            if line.startswith("#"):
                continue
            k = line.split(" ", 1)[0]
            counts[k] = counts.get(k, 0) + 1
        out = []
        for line in self.preamble.splitlines():
            out.append(("# " + line) if line else "#")
        out.append("# counts: " + ", ".join("%s=%d" % (k, counts[k]) for k in KINDS if k in counts))
        out.extend(self.lines)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
        return counts


def emit_from_json(src, dst, quirks_dst=None):
    """JSON layout written by record_rhea.js:
    {"library": "rhea", "preamble": "...", "quirks_preamble": "...",
     "items": [ {"kind":..., "name":..., "hex":..., "note":..., "file": "main"|"quirks"}
              | {"capture": scenario, "events": [[dir, hex], ...], "file": ...}
              | {"comment": text, "file": ...} ]}"""
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    main = VectorFile(doc["library"], doc["preamble"])
    quirks = VectorFile(doc["library"], doc.get("quirks_preamble", ""), qualify_names=True)
    for item in doc["items"]:
        vf = quirks if item.get("file") == "quirks" else main
        if "capture" in item:
            events = [(d, bytes.fromhex(h)) for d, h in item["events"]]
            vf.add_capture(item["capture"], events, keep=item.get("keep"))
        elif "comment" in item:
            vf.comment(item["comment"])
        else:
            vf.add(item["kind"], item["name"], bytes.fromhex(item["hex"]), note=item.get("note"))
    if quirks_dst:
        quirks.write(quirks_dst)
    return main.write(dst)


QUIRKS_PREAMBLE = """AMQP 1.0 bytes that real implementations send but that do NOT follow the AMQP 1.0 spec.
Generated by codec/tests/vectors/record/record.sh - do not edit by hand; see README.md.
Kept apart from proton.vectors / rhea.vectors (which only hold spec-conformant bytes) so that
a test can decide per vector whether Ferry should tolerate it.  Each vector is preceded by a
comment starting with QUIRK: that says what is wrong.
Format: KIND NAME HEX   (lines starting with # are comments)"""


def merge(dst, parts):
    """Concatenate the vectors (and comments) of several .vectors files into
    dst under QUIRKS_PREAMBLE; each part's own header becomes a comment."""
    out = []
    names = set()
    counts = {}
    for part in parts:
        with open(part, encoding="utf-8") as f:
            lines = f.read().splitlines()
        out.append("#")
        out.append("# ==== from %s ====" % os.path.basename(part))
        for line in lines:
            if line.startswith("# counts:"):
                continue
            if line and not line.startswith("#"):
                kind, name, _ = line.split()
                if name in names:
                    raise ValueError("duplicate name %s in %s" % (name, part))
                names.add(name)
                counts[kind] = counts.get(kind, 0) + 1
            out.append(line)
    head = ["# " + l if l else "#" for l in QUIRKS_PREAMBLE.splitlines()]
    head.append("# counts: " + ", ".join("%s=%d" % (k, counts[k]) for k in KINDS if k in counts))
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(head + out) + "\n")
    return counts


STATE_CODES = {0x23, 0x24, 0x25, 0x26, 0x27, 0x33, 0x34}
SECTION_CODES = set(range(0x70, 0x79))


def _decode_all(data):
    """Decode data as a sequence of AMQP values with proton; return the
    list of decoded objects (raises if bytes are left over or invalid)."""
    proton = _proton()
    out = []
    pos = 0
    while pos < len(data):
        d = proton.Data()
        n = d.decode(bytes(data[pos:]))
        if n <= 0:
            raise ValueError("decoder consumed nothing at offset %d" % pos)
        d.rewind()
        d.next()
        out.append(d.get_object())
        pos += n
    return out


def _code(obj):
    desc = getattr(obj, "descriptor", None)
    if desc is None:
        return None
    try:
        return int(desc)
    except (TypeError, ValueError):
        return {"amqp:accepted:list": 0x24}.get(str(desc), -1)


def check(path):
    """Check the format of a .vectors file and that every vector decodes
    (with proton's decoder) as what its KIND says.  Returns the counts."""
    names = set()
    counts = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            where = "%s:%d" % (path, lineno)
            fields = line.split()
            if len(fields) != 3:
                raise ValueError("%s: expected 3 fields" % where)
            kind, name, hx = fields
            if kind not in KINDS or not NAME_RE.match(name) or name in names:
                raise ValueError("%s: bad kind or name (or duplicate name)" % where)
            if not re.match(r"^(?:[0-9a-f]{2})+$", hx):
                raise ValueError("%s: bad hex" % where)
            names.add(name)
            data = bytes.fromhex(hx)
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "protocol-header":
                if len(data) != 8 or data[:4] != b"AMQP" or data[5:] != b"\x01\x00\x00":
                    raise ValueError("%s: bad protocol header" % where)
            elif kind in ("frame", "sasl-frame"):
                size = struct.unpack(">I", data[:4])[0]
                if size != len(data) or data[4] < 2 or data[5] != (0 if kind == "frame" else 1):
                    raise ValueError("%s: bad frame header" % where)
                body = frame_body(data)
                if body:
                    code = descriptor_code(body)
                    if code not in PERFORMATIVES or (kind == "sasl-frame") != (code >= 0x40):
                        raise ValueError("%s: unexpected performative" % where)
                    if code == 0x14:
                        transfer_fields(data)
                    else:
                        if len(_decode_all(body)) != 1:
                            raise ValueError("%s: trailing bytes after performative" % where)
            elif kind == "value":
                if len(_decode_all(data)) != 1:
                    raise ValueError("%s: not exactly one value" % where)
            elif kind == "section":
                vals = _decode_all(data)
                if len(vals) != 1 or _code(vals[0]) not in SECTION_CODES:
                    raise ValueError("%s: not one section" % where)
            elif kind == "message":
                for v in _decode_all(data):
                    if _code(v) not in SECTION_CODES:
                        raise ValueError("%s: message part is not a section" % where)
            elif kind == "state":
                vals = _decode_all(data)
                if len(vals) != 1 or _code(vals[0]) not in STATE_CODES:
                    raise ValueError("%s: not one delivery state" % where)
    return counts


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "emit":
        counts = emit_from_json(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) == 5 else None)
        print("%s: %s" % (sys.argv[3], counts))
    elif len(sys.argv) >= 4 and sys.argv[1] == "merge":
        print("%s: %s" % (sys.argv[2], merge(sys.argv[2], sys.argv[3:])))
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        for p in sys.argv[2:]:
            print("%s: ok %s" % (p, check(p)))
    else:
        sys.exit("usage: vectorlib.py emit INPUT.json OUTPUT.vectors [QUIRKS.vectors]\n"
                 "       vectorlib.py merge OUTPUT.vectors PART.vectors...\n"
                 "       vectorlib.py check FILE...")
