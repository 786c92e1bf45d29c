'use strict';
// rhea values to and from the canonical typed JSON form of typed_cases.json. Reading works on
// rhea's own decoder output (types.Reader), which keeps each value's AMQP type code.

const fs = require('fs');
const path = require('path');
const types = require('rhea').types;

function loadCases() {
    return JSON.parse(fs.readFileSync(path.join(__dirname, 'typed_cases.json'), 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// Building rhea typed values

const TWO53 = 2n ** 53n;

// A 64-bit integer as rhea takes it: a number when exact, else 8 big-endian bytes.
function int64(s, signed) {
    const big = BigInt(s);
    if (big < TWO53 && big > -TWO53) return Number(big);
    const b = Buffer.alloc(8);
    if (signed) b.writeBigInt64BE(big); else b.writeBigUInt64BE(big);
    return b;
}

function float32(hex) { return Buffer.from(hex, 'hex').readFloatBE(0); }
function float64(hex) { return Buffer.from(hex, 'hex').readDoubleBE(0); }
function uuidBytes(s) { return Buffer.from(s.replace(/-/g, ''), 'hex'); }

// Element type codes used when writing arrays (the wide encodings: every element the same).
const ARRAY_CODES = {
    boolean: 0x56, ubyte: 0x50, ushort: 0x60, uint: 0x70, ulong: 0x80, byte: 0x51, short: 0x61,
    int: 0x71, long: 0x81, float: 0x72, double: 0x82, decimal32: 0x74, decimal64: 0x84,
    decimal128: 0x94, char: 0x73, timestamp: 0x83, uuid: 0x98, binary: 0xb0, string: 0xb1,
    symbol: 0xb3, list: 0xd0, map: 0xd1,
};

// The raw element value Writer.write_value expects for an array element.
function rawElement(c) {
    const t = c[0];
    const v = c[1];
    switch (t) {
    case 'boolean': return v ? 1 : 0;
    case 'ulong': return int64(v, false);
    case 'long': case 'timestamp': return int64(v, true);
    case 'float': return float32(v);
    case 'double': return float64(v);
    case 'decimal32': case 'decimal64': case 'decimal128': case 'binary': return Buffer.from(v, 'hex');
    case 'uuid': return uuidBytes(v);
    case 'list': case 'map': return build(c).value;
    default: return v;
    }
}

function build(c) {
    const t = c[0];
    const v = c[1];
    switch (t) {
    case 'null': return types.Null();
    case 'boolean': return types.wrap_boolean(v);
    case 'ubyte': return types.Ubyte(v);
    case 'ushort': return types.Ushort(v);
    case 'uint': return types.wrap_uint(v);
    case 'ulong': return types.wrap_ulong(int64(v, false));
    case 'byte': return types.Byte(v);
    case 'short': return types.Short(v);
    case 'int': return types.wrap_int(v);
    case 'long': return types.wrap_long(int64(v, true));
    case 'float': return types.wrap_float(float32(v));
    case 'double': return types.wrap_double(float64(v));
    case 'decimal32': return types.Decimal32(Buffer.from(v, 'hex'));
    case 'decimal64': return types.Decimal64(Buffer.from(v, 'hex'));
    case 'decimal128': return types.Decimal128(Buffer.from(v, 'hex'));
    case 'char': return types.wrap_char(v);
    case 'timestamp': return types.wrap_timestamp(int64(v, true));
    case 'uuid': return types.wrap_uuid(uuidBytes(v));
    case 'binary': return types.wrap_binary(Buffer.from(v, 'hex'));
    case 'string': return types.wrap_string(v);
    case 'symbol': return types.wrap_symbol(v);
    // List32/Map32 directly: wrap_list would turn an empty list into list0, which is fine, but
    // keeping one encoding makes the bytes predictable.
    case 'list': return types.List32(v.map(build));
    case 'map': {
        const items = [];
        for (const [k, x] of v) { items.push(build(k)); items.push(build(x)); }
        return types.Map32(items);
    }
    case 'array': {
        const descriptor = c.length > 3 ? build(c[3]) : undefined;
        return types.Array32(c[2].map(rawElement), ARRAY_CODES[v], descriptor);
    }
    case 'described': return types.described_nc(build(c[1]), build(c[2]));
    default: throw new Error('unknown canonical type ' + t);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading: the canonical form of a Typed value from types.Reader

const NAMES = {
    0x40: 'null', 0x41: 'boolean', 0x42: 'boolean', 0x56: 'boolean',
    0x50: 'ubyte', 0x60: 'ushort', 0x70: 'uint', 0x52: 'uint', 0x43: 'uint',
    0x80: 'ulong', 0x53: 'ulong', 0x44: 'ulong',
    0x51: 'byte', 0x61: 'short', 0x71: 'int', 0x54: 'int', 0x81: 'long', 0x55: 'long',
    0x72: 'float', 0x82: 'double', 0x74: 'decimal32', 0x84: 'decimal64', 0x94: 'decimal128',
    0x73: 'char', 0x83: 'timestamp', 0x98: 'uuid', 0xa0: 'binary', 0xb0: 'binary',
    0xa1: 'string', 0xb1: 'string', 0xa3: 'symbol', 0xb3: 'symbol',
    0x45: 'list', 0xc0: 'list', 0xd0: 'list', 0xc1: 'map', 0xd1: 'map', 0xe0: 'array', 0xf0: 'array',
};

function bigOf(v, signed) {
    if (Buffer.isBuffer(v)) return signed ? v.readBigInt64BE(0) : v.readBigUInt64BE(0);
    return BigInt(v);
}

function uuidString(b) {
    const h = b.toString('hex');
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join('-');
}

function canon(typed, ignoreDescriptor) {
    if (typed.descriptor && !ignoreDescriptor) {
        return ['described', canon(typed.descriptor), canon(typed, true)];
    }
    const code = typed.type.typecode;
    const name = NAMES[code];
    const v = typed.value;
    switch (name) {
    case 'null': return ['null'];
    case 'boolean': return ['boolean', code === 0x41 ? true : code === 0x42 ? false : Boolean(v)];
    case 'ubyte': case 'ushort': case 'byte': case 'short': return [name, v];
    case 'uint': case 'int': return [name, code === 0x43 ? 0 : v];
    case 'ulong': return ['ulong', code === 0x44 ? '0' : bigOf(v, false).toString()];
    case 'long': return ['long', bigOf(v, true).toString()];
    case 'timestamp': return ['timestamp', String(v instanceof Date ? v.getTime() : bigOf(v, true))];
    case 'float': { const b = Buffer.alloc(4); b.writeFloatBE(v); return ['float', b.toString('hex')]; }
    case 'double': { const b = Buffer.alloc(8); b.writeDoubleBE(v); return ['double', b.toString('hex')]; }
    case 'decimal32': case 'decimal64': case 'decimal128': return [name, Buffer.from(v).toString('hex')];
    case 'char': return ['char', v];
    case 'uuid': return ['uuid', uuidString(Buffer.from(v))];
    case 'binary': return ['binary', Buffer.from(v).toString('hex')];
    case 'string': case 'symbol': return [name, v];
    case 'list': return ['list', (v || []).map((x) => canon(x))];
    case 'map': {
        const pairs = [];
        for (let i = 0; i + 1 < v.length; i += 2) pairs.push([canon(v[i]), canon(v[i + 1])]);
        return ['map', pairs];
    }
    case 'array': {
        const ac = typed.array_constructor || {};
        const out = ['array', NAMES[ac.typecode] || ('code-' + ac.typecode), v.map((x) => canon(x))];
        if (ac.descriptor) out.push(canon(ac.descriptor));
        return out;
    }
    default: return ['unknown-type-code', code];
    }
}

// The sections of an encoded message: [{code, typed}] in order (code = descriptor number).
function sections(raw) {
    const reader = new types.Reader(raw);
    const out = [];
    while (reader.remaining() > 0) {
        const s = reader.read();
        const d = s.descriptor ? s.descriptor.value : undefined;
        out.push({code: typeof d === 'number' ? d : String(d), typed: s});
    }
    return out;
}

module.exports = {loadCases, build, canon, sections};
