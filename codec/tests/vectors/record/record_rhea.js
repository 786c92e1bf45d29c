#!/usr/bin/env node
// Record AMQP 1.0 byte vectors from rhea (npm).
//
//   node record_rhea.js OUTPUT.json
//
// * value / message / section / state vectors come from rhea's encoders
//   (rhea.types constructors + types.Writer, rhea.message.encode, the
//   outcome composites in rhea.message).
// * frame / sasl-frame / protocol-header vectors are the bytes that a rhea
//   client and a rhea server (two containers in this process, 127.0.0.1)
//   exchanged through a logging TCP proxy written below.
//
// The JSON it writes is turned into rhea.vectors by vectorlib.py (shared
// with the proton recorder), which splits the captured streams into frames.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const rhea = require('rhea');

const types = rhea.types;
const message = rhea.message;
const rheaVersion = require('rhea/package.json').version;

const SCENARIO_TIMEOUT_MS = 20000;
const FIXED_UUID = Buffer.from('f81d4fae7dec11d0a76500a0c91e6bf6', 'hex');
const items = [];
// Vectors go to rhea.vectors, except inside quirk(), where they go to the
// quirks file: bytes rhea really sends that do not follow the AMQP 1.0
// spec (see ../README.md).
let destination = 'main';

function hex(buf) { return Buffer.from(buf).toString('hex'); }

function add(kind, name, buf, note) {
    const item = { kind, name, hex: hex(buf), file: destination };
    if (note) item.note = note;
    items.push(item);
}

function comment(text) { items.push({ comment: text, file: destination }); }

function quirk(fn) {
    destination = 'quirks';
    try { return fn(); } finally { destination = 'main'; }
}

async function quirkAsync(fn) {
    destination = 'quirks';
    try { return await fn(); } finally { destination = 'main'; }
}

function encode(typed) {
    const w = new types.Writer();
    w.write(typed);
    return w.toBuffer();
}

// ---------------------------------------------------------------------------
// values

function recordValues() {
    comment('');
    comment('---- values: rhea.types constructors / wrap_* written with rhea.types.Writer ----');
    const V = (name, typed, note) => add('value', name, encode(typed), note);
    const T = types;

    V('null', T.Null());
    V('boolean.true', T.True());
    V('boolean.false', T.False());
    V('boolean.0x56.true', T.Boolean(1), 'explicit one-byte boolean form');
    V('boolean.0x56.false', T.Boolean(0), 'explicit one-byte boolean form');
    V('ubyte.0', T.Ubyte(0));
    V('ubyte.255', T.wrap_ubyte(255));
    V('ushort.65535', T.wrap_ushort(65535));
    V('uint.0', T.wrap_uint(0));
    V('uint.small.255', T.wrap_uint(255));
    V('uint.256', T.wrap_uint(256));
    V('uint.max', T.wrap_uint(4294967295));
    V('uint.0x70.zero', T.Uint(0), 'explicit 4-byte uint holding 0 (non-minimal)');
    V('ulong.0', T.wrap_ulong(0));
    V('ulong.small.255', T.wrap_ulong(255));
    V('ulong.256', T.wrap_ulong(256));
    V('ulong.2pow40', T.wrap_ulong(Math.pow(2, 40)));
    V('ulong.max', T.wrap_ulong(Buffer.from('ffffffffffffffff', 'hex')), 'from an 8-byte buffer');
    V('ulong.0x80.small', T.Ulong(5), 'explicit 8-byte ulong holding 5 (non-minimal)');
    V('byte.-128', T.wrap_byte(-128));
    V('short.-32768', T.wrap_short(-32768));
    V('int.small.-1', T.wrap_int(-1));
    V('int.small.127', T.wrap_int(127));
    V('int.-129', T.wrap_int(-129));
    V('int.max', T.wrap_int(2147483647));
    V('long.small.-128', T.wrap_long(-128));
    V('long.128', T.wrap_long(128));
    V('long.-2pow40', T.wrap_long(-Math.pow(2, 40)));
    V('long.min', T.wrap_long(Buffer.from('8000000000000000', 'hex')), 'from an 8-byte buffer');
    V('float.1.5', T.wrap_float(1.5));
    V('double.pi', T.wrap_double(Math.PI));
    V('double.-0', T.wrap_double(-0));
    V('decimal32', T.Decimal32(Buffer.from('22380001', 'hex')), 'raw bits 0x22380001');
    V('decimal64', T.Decimal64(Buffer.from('2238000000000001', 'hex')), 'raw bits');
    V('decimal128', T.Decimal128(Buffer.from('303132333435363738393a3b3c3d3e3f', 'hex')), 'raw bytes 30..3f');
    V('char.a', T.wrap_char(0x61));
    V('char.emoji', T.wrap_char(0x1F600));
    V('timestamp.2023', T.wrap_timestamp(1700000000123), '2023-11-14T22:13:20.123Z');
    V('timestamp.date', T.wrap(new Date(0)), 'a JS Date through types.wrap');
    V('uuid', T.wrap_uuid(FIXED_UUID), 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6');
    V('binary.vbin8', T.wrap_binary(Buffer.from([0, 1, 2, 0xfe, 0xff])));
    V('binary.empty', T.wrap_binary(Buffer.alloc(0)));
    V('binary.vbin32', T.wrap_binary(Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256))), '300 bytes 00 01 .. ff 00 ..');
    V('binary.vbin32.short', T.Vbin32(Buffer.from('ab', 'hex')), 'explicit vbin32 for 1 byte (non-minimal)');
    V('string.ascii', T.wrap_string('hello world'));
    V('string.empty', T.wrap_string(''));
    V('string.utf8', T.wrap_string('gr\u00fc\u00dfe \u20ac \u65e5\u672c \u{1F600}'), 'non-ASCII UTF-8');
    V('string.str32', T.wrap_string('\u00e9'.repeat(150)), '150 x U+00E9 = 300 UTF-8 bytes');
    V('string.str32.short', T.Str32('abc'), 'explicit str32 (non-minimal)');
    V('symbol.sym8', T.wrap_symbol('amqp:accepted:list'));
    V('symbol.sym32', T.wrap_symbol('s'.repeat(300)));
    V('symbol.sym32.short', T.Sym32('abc'), 'explicit sym32 (non-minimal)');

    comment('lists and maps: rhea.types.wrap() always produces list32/map32; list8/map8 are explicit');
    V('list.empty', T.wrap_list([]));
    V('list.wrap', T.wrap([1, 'two', -3, 2.5, true, null]), 'types.wrap of a JS array');
    V('list.list8', T.List8([T.SmallInt(1), T.Str8('two'), T.Sym8('three'), T.Null()]));
    V('list.list8.empty', T.List8([]), 'explicit empty list8 (non-minimal)');
    V('list.list32.big', T.wrap(Array.from({ length: 40 }, (_, i) => 'item-' + String(i).padStart(3, '0'))), '40 strings, > 255 bytes');
    V('list.nested', T.List8([T.List0(), T.List8([T.wrap_uint(1), T.List8([T.Ubyte(2)])]), T.Map8([T.Sym8('k'), T.Str8('v')])]));
    V('map.wrap', T.wrap({ a: 1, b: 'two', c: null }), 'types.wrap of a JS object: string keys, map32');
    V('map.empty', T.wrap({}));
    V('map.map8', T.Map8([T.Sym8('k1'), T.SmallInt(1), T.wrap_ulong(7), T.Str8('v'), T.wrap_uuid(FIXED_UUID), T.True()]));
    V('map.map32.big', T.wrap_symbolic_map(Object.fromEntries(Array.from({ length: 30 }, (_, i) => ['key-' + String(i).padStart(2, '0'), 'value-' + String(i).padStart(2, '0')]))), '30 entries, > 255 bytes');
    V('map.symbolic', T.wrap_symbolic_map({ 'x-opt-a': 1, 'x-opt-b': 'b' }));
    V('map.js-map', T.wrap(new Map([[1, 'one'], ['two', 2]])), 'types.wrap of a JS Map');

    comment('arrays (rhea: array8 0xe0 or array32 0xf0 chosen by the caller)');
    V('array8.int', T.Array8([1, -2, 300], T.Int.typecode));
    V('array8.smallint', T.Array8([1, -2], T.SmallInt.typecode));
    V('array8.symbol', T.Array8(['amqp:accepted:list', 'amqp:rejected:list'], T.Sym8.typecode));
    V('array8.string', T.Array8(['a', '\u00e9t\u00e9', ''], T.Str8.typecode));
    V('array8.boolean', T.Array8([1, 0, 1], T.Boolean.typecode), 'booleans inside an array use 0x56');
    V('array8.ulong', T.Array8([0, 1, Math.pow(2, 40)], T.Ulong.typecode));
    V('array8.uuid', T.Array8([FIXED_UUID], T.Uuid.typecode));
    V('array8.empty', T.Array8([], T.Int.typecode));
    V('array32.symbol', T.wrap_array(['queue', 'topic'], T.Sym8.typecode), 'types.wrap_array always uses array32');
    V('array32.string.big', T.Array32(Array.from({ length: 30 }, (_, i) => 'element-' + String(i).padStart(3, '0')), T.Str8.typecode), '30 strings, > 255 bytes');
    V('array32.str32', T.Array32(['x'.repeat(200), 'y'.repeat(100)], T.Str32.typecode));
    V('array8.list', T.Array8([[T.SmallInt(1)], []], T.List8.typecode), 'array of list8');
    V('array8.described.numeric', T.Array8([[], []], T.List8.typecode, T.wrap_ulong(0x24)), 'array of two accepted outcomes (shared descriptor)');
    V('array8.described.symbolic', T.Array8(['x', 'y'], T.Str8.typecode, T.wrap_symbol('example:str')));
    V('described.numeric.list', T.described(T.wrap_ulong(0x24), T.List0()), 'accepted');
    V('described.numeric.selector', rhea.filter.selector("color = 'red'")['jms-selector'], "rhea.filter.selector(): descriptor 0x0000468c00000004");
    V('described.symbolic.string', T.described(T.wrap_symbol('apache.org:selector-filter:string'), T.wrap_string("color = 'red'")));
    V('described.wrap_described', T.wrap_described({ a: 1 }, 'example:described:map'));
    // (no nested described value: rhea.types.described() overwrites the descriptor of
    // an already described value instead of nesting it)
    V('error', T.wrap_error({ condition: 'amqp:not-found', description: 'no such node' }), 'types.wrap_error');
    quirk(() => V('error.info-string-keys', T.wrap_error({ condition: 'amqp:not-found', description: 'no such node', info: { node: 'q1' } }),
        'QUIRK: rhea encodes error info (fields: symbol keys) with string keys'));

    comment('transaction bodies and the coordinator target (rhea has no transaction API: built from rhea.types)');
    V('txn.declare', T.described(T.wrap_ulong(0x31), T.List0()));
    V('txn.discharge.commit', T.described(T.wrap_ulong(0x32), T.List8([T.wrap_binary(Buffer.from('txn-0001')), T.False()])));
    V('txn.discharge.rollback', T.described(T.wrap_ulong(0x32), T.List8([T.wrap_binary(Buffer.from('txn-0001')), T.True()])));
    V('txn.declared', T.described(T.wrap_ulong(0x33), T.List8([T.wrap_binary(Buffer.from('txn-0001'))])));
    V('txn.coordinator', T.described(T.wrap_ulong(0x30), T.List8([T.Array8(['amqp:local-transactions'], T.Sym8.typecode)])));
}

// ---------------------------------------------------------------------------
// delivery states

function recordStates() {
    comment('');
    comment('---- delivery states: the outcome composites of rhea.message, .described() ----');
    const S = (name, composite, note) => add('state', name, encode(composite.described ? composite.described() : composite), note);
    S('state.accepted', message.accepted());
    S('state.rejected', message.rejected({ error: { condition: 'amqp:not-allowed', description: 'the message was rejected' } }));
    quirk(() => S('state.rejected.info-string-keys', message.rejected({ error: { condition: 'amqp:not-allowed', description: 'the message was rejected', info: { field: 'subject', code: 42 } } }),
        'QUIRK: rhea encodes error info (fields: symbol keys) with string keys'));
    S('state.rejected.empty', message.rejected());
    S('state.released', message.released());
    S('state.modified', message.modified({ delivery_failed: true, undeliverable_here: true, message_annotations: { 'x-opt-reason': 'retry', 'x-opt-count': 3 } }));
    S('state.modified.partial', message.modified({ delivery_failed: true }));
    S('state.received', message.received({ section_number: 2, section_offset: 1024 }));
    S('state.received.zero', message.received({ section_number: 0, section_offset: 0 }));
    S('state.transactional.accepted', types.described(types.wrap_ulong(0x34), types.wrap_list([
        types.wrap_binary(Buffer.from('txn-0001')), message.accepted().described()])), 'built from rhea.types');
}

// ---------------------------------------------------------------------------
// messages and sections

function fullMessage() {
    return {
        durable: true,
        priority: 7,
        ttl: 60000,
        first_acquirer: true,
        delivery_count: 3,
        delivery_annotations: { 'x-opt-delivery-hint': 'fast', 'x-opt-n': 1 },
        message_annotations: { 'x-opt-partition': 3, 'x-opt-origin': 'broker-1' },
        message_id: 12345,
        user_id: Buffer.from('guest'),
        to: 'queue://orders',
        subject: 'order-created',
        reply_to: 'queue://replies',
        correlation_id: 'corr-7',
        content_type: 'application/json',
        content_encoding: 'utf-8',
        absolute_expiry_time: 1700000060000,
        creation_time: new Date(1700000000000),
        group_id: 'group-a',
        group_sequence: 9,
        reply_to_group_id: 'group-r',
        application_properties: {
            str: 's', int: -5, uint: 5, big: 70000, bool: true, double: 1.25, null: null,
            ts: new Date(1700000000000), bin: Buffer.from([0, 255]),
            sym: types.wrap_symbol('sym'), uuid: types.wrap_uuid(FIXED_UUID), ubyte: types.wrap_ubyte(8),
            long: types.wrap_long(-Math.pow(2, 40)),
        },
        body: '{"order": 1}',
    };
}

const SECTION_NAMES = {
    0x70: 'header', 0x71: 'delivery-annotations', 0x72: 'message-annotations', 0x73: 'properties',
    0x74: 'application-properties', 0x75: 'data', 0x76: 'amqp-sequence', 0x77: 'amqp-value', 0x78: 'footer',
};

function splitSections(buf) {
    const reader = new types.Reader(buf);
    const out = [];
    while (reader.remaining()) {
        const start = reader.position;
        const s = reader.read();
        out.push([Number(s.descriptor.value), buf.slice(start, reader.position)]);
    }
    return out;
}

function recordMessages() {
    comment('');
    comment('---- messages: rhea.message.encode(...) ----');
    const M = (name, msg, note) => add('message', name, message.encode(msg), note);
    M('message.full.amqp-value', fullMessage(), 'every section rhea supports except footer; message-id ulong');
    const withFooter = Object.assign(fullMessage(), { footer: { 'x-opt-checksum': 'abc123' } });
    quirk(() => M('message.footer-before-body', withFooter,
        'QUIRK: rhea.message.encode writes the footer section before the body section'));
    M('message.id.ulong', { message_id: 7, correlation_id: 7, body: 'id test' });
    M('message.id.uuid', { message_id: FIXED_UUID, correlation_id: FIXED_UUID, body: 'id test' }, 'a 16-byte Buffer message-id is a uuid in rhea');
    M('message.id.binary', { message_id: types.wrap_binary(Buffer.from([1, 2, 3])), correlation_id: types.wrap_binary(Buffer.from([1, 2, 3])), body: 'id test' });
    M('message.id.string', { message_id: 'id-string', correlation_id: 'id-string', body: 'id test' });
    M('message.body.data', { body: message.data_section(Buffer.from('\x00\x01binary payload', 'binary')) }, 'one data section');
    M('message.body.data.multiple', { subject: 'multi', body: message.data_sections([Buffer.from('first '), Buffer.from('second '), Buffer.from('third')]) }, 'three data sections');
    M('message.body.amqp-sequence', { body: message.sequence_section([1, 'two', types.wrap_symbol('three')]) });
    M('message.body.amqp-sequence.multiple', { body: message.sequence_sections([[1, 2], ['three']]) }, 'two amqp-sequence sections');
    M('message.body.amqp-value.map', { body: { k: 'v', n: 1 } });
    M('message.body.amqp-value.binary', { body: Buffer.from('raw') }, 'a Buffer body is amqp-value(binary) in rhea');
    M('message.body.none', {}, 'no body: rhea still writes header, properties and amqp-value(null)');
    M('message.body.str32', { durable: true, body: 'x'.repeat(300) });

    comment('');
    comment('---- sections: the sections of message.full.amqp-value and of the multi-section bodies, split with rhea.types.Reader ----');
    for (const [code, buf] of splitSections(message.encode(fullMessage()))) {
        add('section', 'section.full.' + SECTION_NAMES[code], buf);
    }
    for (const [code, buf] of splitSections(message.encode(withFooter))) {
        if (code === 0x78) add('section', 'section.footer', buf, 'footer (rhea uses string keys for the footer map)');
    }
    const seq = splitSections(message.encode({ body: message.sequence_sections([[1, 2], ['three']]) }));
    add('section', 'section.amqp-sequence', seq[seq.length - 1][1]);
    const data = splitSections(message.encode({ body: message.data_section(Buffer.from('data section')) }));
    add('section', 'section.data', data[data.length - 1][1]);
    add('section', 'section.header.empty', splitSections(message.encode({}))[0][1], 'rhea writes an empty header as list0');
    add('section', 'section.amqp-value.null', splitSections(message.encode({}))[2][1]);
    add('section', 'section.properties.uuid-id', splitSections(message.encode({
        message_id: FIXED_UUID, user_id: Buffer.from('user'), to: 'to', subject: 'subject', reply_to: 'reply-to',
        correlation_id: types.wrap_binary(Buffer.from([0xca, 0xfe])), content_type: 'text/plain', content_encoding: 'gzip',
        absolute_expiry_time: 1700000060000, creation_time: 1700000000000, group_id: 'group', group_sequence: 4,
        reply_to_group_id: 'reply-group',
    }))[1][1], 'all 13 properties fields, message-id uuid, correlation-id binary');
}

// ---------------------------------------------------------------------------
// the logging proxy

function startTap(upstreamPort) {
    return new Promise((resolve) => {
        const events = [];
        let finished;
        const done = new Promise((r) => { finished = r; });
        const server = net.createServer((client) => {
            server.close();
            const upstream = net.connect(upstreamPort, '127.0.0.1');
            let ended = 0;
            const end = () => { if (++ended === 2) finished(); };
            client.on('data', (d) => { events.push(['c2s', hex(d)]); upstream.write(d); });
            upstream.on('data', (d) => { events.push(['s2c', hex(d)]); client.write(d); });
            client.on('end', () => upstream.end());
            upstream.on('end', () => client.end());
            client.on('close', end);
            upstream.on('close', end);
            client.on('error', () => upstream.destroy());
            upstream.on('error', () => client.destroy());
        });
        server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, events, done, server }));
    });
}

function listen(container, options) {
    return new Promise((resolve) => {
        const server = container.listen(Object.assign({ port: 0, host: '127.0.0.1' }, options));
        server.on('listening', () => resolve(server));
    });
}

function quiet(container) {
    // Errors are sent on purpose; keep rhea from throwing them.
    for (const ev of ['error', 'connection_error', 'session_error', 'sender_error', 'receiver_error', 'protocol_error']) {
        container.on(ev, () => {});
    }
}

// rhea (3.0.x) batches the dispositions written in one tick into ranges and
// may merge a delivery with a different outcome into the previous range
// (write_dispositions() only compares states once a range has two members).
// Applying each outcome in its own timer tick keeps one disposition per
// delivery on the wire.
function spaced() {
    let nextAt = 0;
    return (fn) => {
        const now = Date.now();
        nextAt = Math.max(nextAt, now) + 40;
        setTimeout(fn, nextAt - now);
    };
}

function text(n) {
    // non-repeating filler, so the frames of a multi-frame transfer differ
    let s = '';
    for (let i = 0; s.length < n; i++) s += String(i).padStart(5, '0') + ' ';
    return s.slice(0, n);
}

function steps(list, gap) {
    let i = 0;
    const next = () => {
        if (i < list.length) {
            list[i++]();
            setTimeout(next, gap);
        }
    };
    setTimeout(next, gap);
}

const TERMINUS_FIELDS = ['address', 'durable', 'expiry_policy', 'timeout', 'dynamic', 'dynamic_node_properties',
    'distribution_mode', 'filter', 'default_outcome', 'outcomes', 'capabilities'];

function copyTerminus(t) {
    if (!t) return undefined;
    const o = {};
    for (const n of TERMINUS_FIELDS) {
        let v;
        try { v = t[n]; } catch (e) { v = undefined; }
        if (v !== undefined && v !== null) o[n] = v;
    }
    return o;
}

// A rhea server: echoes termini, answers messages according to their subject.
function makeServer(id, outgoing) {
    const c = rhea.create_container({ id });
    quiet(c);
    const held = [];
    const later = spaced();
    c.on('receiver_open', (ctx) => {
        const r = ctx.receiver;
        r.set_source(copyTerminus(r.remote.attach.source) || {});
        r.set_target(copyTerminus(r.remote.attach.target) || {});
    });
    c.on('sender_open', (ctx) => {
        const s = ctx.sender;
        const src = copyTerminus(s.remote.attach.source) || {};
        if (src.dynamic) src.address = 'dynamic-queue-0001';
        s.set_source(src);
        s.set_target(copyTerminus(s.remote.attach.target) || {});
    });
    c.on('sendable', (ctx) => {
        while (outgoing.length && ctx.sender.sendable() && ctx.sender.name === outgoing[0].link) {
            ctx.sender.send(outgoing.shift().msg);
        }
    });
    c.on('sender_draining', (ctx) => { ctx.sender.set_drained(true); });
    c.on('message', (ctx) => {
        const d = ctx.delivery;
        if (d.remote_settled) return;
        const subject = ctx.message.subject;
        later(() => {
        switch (subject) {
        case 'reject':
            d.reject({ condition: 'amqp:precondition-failed', description: 'server rejected the message' });
            break;
        case 'reject-info':
            d.reject({ condition: 'amqp:precondition-failed', description: 'server rejected the message', info: { reason: 'test' } });
            break;
        case 'release':
            d.release();
            break;
        case 'modify':
            d.modified({ delivery_failed: true, undeliverable_here: true, message_annotations: { 'x-opt-modified-by': 'server' } });
            break;
        case 'received':
            d.update(false, message.received({ section_number: 1, section_offset: 17 }).described());
            held.push(d);
            break;
        case 'finish':
            while (held.length) held.shift().accept();
            d.accept();
            break;
        default:
            d.accept();
        }
        });
    });
    return c;
}

async function runScenario(name, server, listenOpts, clientOpts, onOpen, timeoutMs, keep) {
    const srv = await listen(server, Object.assign({ autoaccept: false }, listenOpts));
    const tap = await startTap(srv.address().port);
    const client = rhea.create_container({ id: 'ferry-rhea-client' });
    quiet(client);
    let conn;
    const closed = new Promise((resolve) => {
        client.on('connection_close', () => resolve());
        client.on('disconnected', () => resolve());
    });
    if (onOpen) client.on('connection_open', (ctx) => onOpen(ctx.connection, client));
    conn = client.connect(Object.assign({ host: '127.0.0.1', port: tap.port, reconnect: false }, clientOpts));
    const limit = new Promise((resolve) => setTimeout(resolve, timeoutMs || SCENARIO_TIMEOUT_MS));
    await Promise.race([closed, limit]);
    await new Promise((r) => setTimeout(r, 300));
    if (conn.socket) conn.socket.end();
    await Promise.race([tap.done, new Promise((r) => setTimeout(r, 2000))]);
    srv.close();
    tap.server.close();
    process.stderr.write(`rhea scenario ${name}: ${tap.events.length} chunks\n`);
    const item = { capture: name, events: tap.events, file: destination };
    if (keep) item.keep = keep;
    items.push(item);
}

// -- scenario "session": SASL PLAIN, link options, dispositions, drain, echo, detach, errors

function serverMessages() {
    const full = fullMessage();
    full.subject = 'accept';
    const m = (msg) => ({ link: 'receiver-b', msg });
    return [
        m(full),
        m({ subject: 'reject', body: message.data_sections([Buffer.from('one '), Buffer.from('two')]) }),
        m({ subject: 'release', body: message.sequence_section([1, 'two']) }),
        m({ subject: 'modify', body: message.sequence_sections([[1], [2]]) }),
        m({ subject: 'received', body: message.data_section(Buffer.from('data')) }),
        m({ subject: 'accept', message_id: FIXED_UUID, body: { k: 'v' } }),
    ];
}

function sessionScenario(conn) {
    const s1 = conn.open_sender({
        name: 'sender-unsettled',
        target: { address: 'queue-a', durable: 2, expiry_policy: 'never', timeout: 30, capabilities: ['queue'] },
        source: { address: 'client-outbox' },
        max_message_size: 1048576,
        properties: { 'x-opt-link-prop': 'v' },
        offered_capabilities: ['SHARED-SUBS'],
        desired_capabilities: ['DELAYED_DELIVERY'],
    });
    const s2 = conn.open_sender({ name: 'sender-presettled', target: 'queue-presettled', snd_settle_mode: 1 });
    const r1 = conn.open_receiver({
        name: 'receiver-dynamic',
        credit_window: 0,
        autoaccept: false,
        rcv_settle_mode: 0,
        source: {
            dynamic: true,
            dynamic_node_properties: {
                'lifetime-policy': types.described(types.wrap_ulong(0x2b), types.List0()),
                'supported-dist-modes': types.wrap_symbol('move'),
            },
            distribution_mode: 'move',
            filter: rhea.filter.selector("color = 'red' AND size > 10"),
            default_outcome: message.modified({ delivery_failed: true }).described(),
            outcomes: ['amqp:accepted:list', 'amqp:rejected:list', 'amqp:released:list', 'amqp:modified:list'],
            capabilities: ['temporary-queue'],
            expiry_policy: 'link-detach',
            timeout: 5,
        },
        target: { address: 'client-inbox' },
    });
    const r2 = conn.open_receiver({ name: 'receiver-b', source: 'queue-b', credit_window: 0, autoaccept: false });
    const ssn2 = conn.create_session();
    ssn2.begin();

    const later = spaced();
    r2.on('message', (ctx) => {
        const d = ctx.delivery;
        const subject = ctx.message.subject;
        later(() => {
        switch (subject) {
        case 'reject':
            d.reject({ condition: 'amqp:not-allowed', description: 'client rejected' });
            break;
        case 'release':
            d.release();
            break;
        case 'modify':
            d.modified({ delivery_failed: true, undeliverable_here: false, message_annotations: { 'x-opt-retry': 1 } });
            break;
        case 'received':
            d.update(false, message.received({ section_number: 0, section_offset: 3 }).described());
            break;
        default:
            d.accept();
        }
        });
    });

    steps([
        () => {
            for (const subject of ['accept', 'reject', 'release', 'modify', 'received']) {
                s1.send({ subject, message_id: 'msg-' + subject, body: 'message for ' + subject });
            }
            s2.send({ subject: 'presettled', body: message.data_section(Buffer.from('fire and forget')) });
            r2.add_credit(6);
        },
        () => {
            r1.drain = true;
            r1.add_credit(4);
        },
        () => {
            // rhea has no API for echo=true: mark the next flow rhea writes on
            // this session (the performative is still encoded by rhea).
            const session = r2.session;
            const output = session.output;
            session.output = function (frame, payload) {
                if (frame && String(frame.constructor) === 'flow#13') {
                    frame.echo = true;
                    session.output = output;
                }
                return output.call(session, frame, payload);
            };
            r2.add_credit(1);
        },
        () => { s1.send({ subject: 'finish' }); },
        () => {
            s2.detach();
            s1.close({ condition: 'amqp:link:detach-forced', description: 'sender closed with an error' });
            r1.close();
            ssn2.close({ condition: 'amqp:session:errant-link', description: 'session ended with an error' });
        },
        () => {
            r2.close();
            conn.close({ condition: 'amqp:resource-limit-exceeded', description: 'closing with an error' });
        },
    ], 300);
}

// -- scenario "frames": no SASL, max-frame-size 512, multi-frame transfers both ways

function framesScenario(conn) {
    const snd = conn.open_sender({ name: 'big-sender', target: 'big' });
    const rcv = conn.open_receiver({ name: 'big-receiver', source: 'big-out', credit_window: 0 });
    steps([
        () => { snd.send({ subject: 'accept', application_properties: { size: 1400 }, body: text(1400) }); },
        () => { rcv.add_credit(1); },
        () => { conn.close(); },
    ], 300);
}

async function recordWire() {
    comment('');
    comment('==== wire captures: rhea client <-> rhea server via a logging TCP proxy ====');
    comment('frame names: frame.rhea.SCENARIO.DIRECTION.INDEX.PERFORMATIVE; the index counts the');
    comment('frames of the scenario in the order the proxy saw them complete (both directions).');
    comment('Frames byte-identical to an earlier vector are skipped, so indexes can have gaps.');

    let server = makeServer('ferry-rhea-server', serverMessages());
    server.sasl_server_mechanisms.enable_plain((user, pass) => user === 'ferry' && pass === 'secret');
    await runScenario('session', server, {}, {
        username: 'ferry', password: 'secret', hostname: 'ferry.test',
        properties: { product: 'ferry-recorder', version: '1' },
        offered_capabilities: ['ANONYMOUS-RELAY'],
        desired_capabilities: ['DELAYED_DELIVERY', 'SHARED-SUBS'],
        channel_max: 16, max_frame_size: 65536,
        outgoing_locales: ['en-US'], incoming_locales: ['en-US', 'de-DE'],
    }, sessionScenario);

    server = makeServer('ferry-rhea-server', [{ link: 'big-receiver', msg: { subject: 'to-client', body: text(1300) } }]);
    await runScenario('frames', server, { max_frame_size: 512 }, { max_frame_size: 512 }, framesScenario);

    server = makeServer('ferry-rhea-server', []);
    await runScenario('heartbeat', server, { idle_time_out: 1000 }, { idle_time_out: 1000, username: 'anonymous' },
        (conn) => setTimeout(() => conn.close(), 2600));

    // QUIRK scenario: errors carrying info (rhea writes string keys)
    await quirkAsync(async () => {
        comment('');
        comment('QUIRK: rhea writes the info map of an error with string keys (the spec says fields = symbol keys)');
        server = makeServer('ferry-rhea-server', []);
        await runScenario('quirk-error-info', server, {}, {}, (conn) => {
            const snd = conn.open_sender({ name: 'quirk-sender', target: 'q' });
            steps([
                () => { snd.send({ subject: 'reject-info', body: 'rejected with info' }); },
                () => { snd.close({ condition: 'amqp:link:detach-forced', description: 'sender closed with an error', info: { detail: 'test' } }); },
                () => { conn.close({ condition: 'amqp:resource-limit-exceeded', description: 'closing with an error', info: { 'retry-after': 5 } }); },
            ], 300);
        }, null, ['s2c.disposition', 'c2s.detach', 'c2s.close']);
    });

    // SASL with a custom mechanism, to get sasl-challenge / sasl-response
    server = makeServer('ferry-rhea-server', []);
    server.sasl_server_mechanisms['X-FERRY-CHALLENGE'] = function () {
        return {
            outcome: undefined,
            username: undefined,
            start: function () { return Buffer.from('challenge-1'); },
            step: function (response) {
                this.outcome = Buffer.from(response).toString() === 'response-1';
                this.username = 'ferry';
            },
        };
    };
    await runScenario('sasl-challenge', server, {}, {
        sasl_mechanisms: {
            'X-FERRY-CHALLENGE': function () {
                return {
                    start: function (cb) { cb(undefined, Buffer.from('initial-response')); },
                    step: function (challenge, cb) { cb(undefined, Buffer.from('response-1')); },
                };
            },
        },
    }, (conn) => setTimeout(() => conn.close(), 200));

    // SASL PLAIN with a wrong password: sasl-outcome code 1 (auth)
    server = makeServer('ferry-rhea-server', []);
    server.sasl_server_mechanisms.enable_plain(() => false);
    await runScenario('sasl-fail', server, {}, { username: 'ferry', password: 'wrong' }, null, 3000);
}

async function main() {
    const out = process.argv[2] || path.join(__dirname, 'rhea.json');
    recordValues();
    recordStates();
    recordMessages();
    await recordWire();
    const quirksPreamble = [
        `rhea ${rheaVersion} (npm) on node ${process.version}.`,
    ].join('\n');
    const preamble = [
        `AMQP 1.0 byte vectors recorded from rhea ${rheaVersion} (npm) on node ${process.version}.`,
        'Generated by codec/tests/vectors/record/record_rhea.js (+ vectorlib.py) - do not edit by hand; see ../README.md.',
        'Format: KIND NAME HEX   (lines starting with # are comments)',
    ].join('\n');
    fs.writeFileSync(out, JSON.stringify({ library: 'rhea', preamble, quirks_preamble: quirksPreamble, items }, null, 1));
    process.stderr.write(`wrote ${out}\n`);
    process.exit(0);
}

const watchdog = setTimeout(() => { process.stderr.write('record_rhea.js: global timeout\n'); process.exit(2); }, 120000);
watchdog.unref();
main().catch((e) => { console.error(e); process.exit(1); });
