"""Proton values to and from the canonical typed JSON form of typed_cases.json."""

import json
import os
import struct
import uuid

from proton import (Array, Data, Described, byte, char, decimal32, decimal64, decimal128,
                    float32, int32, short, symbol, timestamp, ubyte, uint, ulong, ushort)
from proton._data import UNDESCRIBED

CASES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typed_cases.json")


def load_cases():
    with open(CASES_PATH, encoding="utf-8") as f:
        cases = json.load(f)
    return cases["simple"], cases["compound"]


# Element type names of arrays <-> Proton's Data type codes.
ARRAY_TYPES = {
    "null": Data.NULL, "boolean": Data.BOOL, "ubyte": Data.UBYTE, "ushort": Data.USHORT,
    "uint": Data.UINT, "ulong": Data.ULONG, "byte": Data.BYTE, "short": Data.SHORT,
    "int": Data.INT, "long": Data.LONG, "float": Data.FLOAT, "double": Data.DOUBLE,
    "decimal32": Data.DECIMAL32, "decimal64": Data.DECIMAL64, "decimal128": Data.DECIMAL128,
    "char": Data.CHAR, "timestamp": Data.TIMESTAMP, "uuid": Data.UUID, "binary": Data.BINARY,
    "string": Data.STRING, "symbol": Data.SYMBOL, "list": Data.LIST, "map": Data.MAP,
    "array": Data.ARRAY, "described": Data.DESCRIBED,
}
ARRAY_NAMES = {v: k for k, v in ARRAY_TYPES.items()}


def build(c):
    """The Proton value of a canonical value."""
    t = c[0]
    v = c[1] if len(c) > 1 else None
    if t == "null":
        return None
    if t == "boolean":
        return bool(v)
    simple = {"ubyte": ubyte, "ushort": ushort, "uint": uint, "byte": byte, "short": short,
              "int": int32}
    if t in simple:
        return simple[t](v)
    if t == "ulong":
        return ulong(int(v))
    if t == "long":
        return int(v)  # Proton encodes a plain int as long
    if t == "timestamp":
        return timestamp(int(v))
    if t == "float":
        return float32(struct.unpack(">f", bytes.fromhex(v))[0])
    if t == "double":
        return struct.unpack(">d", bytes.fromhex(v))[0]
    if t == "decimal32":
        return decimal32(int(v, 16))
    if t == "decimal64":
        return decimal64(int(v, 16))
    if t == "decimal128":
        return decimal128(bytes.fromhex(v))
    if t == "char":
        return char(chr(v))
    if t == "uuid":
        return uuid.UUID(v)
    if t == "binary":
        return bytes.fromhex(v)
    if t == "string":
        return str(v)
    if t == "symbol":
        return symbol(v)
    if t == "list":
        return [build(x) for x in v]
    if t == "map":
        return {build(k): build(x) for k, x in v}
    if t == "array":
        descriptor = build(c[3]) if len(c) > 3 else UNDESCRIBED
        return Array(descriptor, ARRAY_TYPES[v], *[build(x) for x in c[2]])
    if t == "described":
        return Described(build(c[1]), build(c[2]))
    raise ValueError("unknown canonical type %r" % (t,))


def canon(v):
    """The canonical form of a value Proton decoded (exact Python classes, not isinstance:
    Proton's wrappers subclass int, float, str and bytes)."""
    cls = type(v)
    if v is None:
        return ["null"]
    if cls is bool:
        return ["boolean", v]
    names = {ubyte: "ubyte", ushort: "ushort", uint: "uint", byte: "byte", short: "short",
             int32: "int"}
    if cls in names:
        return [names[cls], int(v)]
    if cls is ulong:
        return ["ulong", str(int(v))]
    if cls is int:
        return ["long", str(v)]
    if cls is timestamp:
        return ["timestamp", str(int(v))]
    if cls is float32:
        return ["float", struct.pack(">f", v).hex()]
    if cls is float:
        return ["double", struct.pack(">d", v).hex()]
    if cls is decimal32:
        return ["decimal32", "%08x" % int(v)]
    if cls is decimal64:
        return ["decimal64", "%016x" % int(v)]
    if cls is decimal128:
        return ["decimal128", bytes(v).hex()]
    if cls is char:
        return ["char", ord(v)]
    if cls is uuid.UUID:
        return ["uuid", str(v)]
    if cls is bytes:
        return ["binary", v.hex()]
    if cls is symbol:
        return ["symbol", str(v)]
    if cls is str:
        return ["string", v]
    if cls is list:
        return ["list", [canon(x) for x in v]]
    if isinstance(v, dict):
        return ["map", [[canon(k), canon(x)] for k, x in v.items()]]
    if cls is Array:
        out = ["array", ARRAY_NAMES.get(v.type, "type-%s" % v.type), [canon(x) for x in v.elements]]
        if v.descriptor is not UNDESCRIBED and v.descriptor != UNDESCRIBED:
            out.append(canon(v.descriptor))
        return out
    if cls is Described:
        return ["described", canon(v.descriptor), canon(v.value)]
    return ["unknown-python-type", "%s.%s" % (cls.__module__, cls.__name__), repr(v)]


def diff(name, expected, actual):
    """None if equal, else a one-line description."""
    e = json.loads(json.dumps(expected))
    a = json.loads(json.dumps(actual))
    if e == a:
        return None
    return "%s: expected %s, got %s" % (name, json.dumps(e, ensure_ascii=False),
                                        json.dumps(a, ensure_ascii=False))
