'use strict';
// A rhea sender for scenarios 23 to 25: sends the messages listed in a JSON file, in order, on
// one link, waits for the outcome of each, then closes and exits 0. Like route_rhea_send.js,
// plus typed message annotations and the time each message was sent and settled.
//
// usage: node sub_rhea_send.js PORT ADDRESS SPECFILE [--timeout S] [--container ID]
//
// SPECFILE holds a list of messages, each an object with any of:
//   body, props (application-properties), subject, durable, ttl (ms),
//   annotations: {NAME: [TYPE, VALUE]} message annotations, TYPE one of
//     "date"       a JavaScript Date (VALUE ms since the epoch): rhea encodes it as a timestamp
//     "timestamp"  rhea.types.wrap_timestamp(VALUE)
//     "long"       rhea.types.wrap_long(VALUE)
//     "ulong"      rhea.types.wrap_ulong(VALUE)
//   and "date+", "timestamp+", "long+": the same, with VALUE ms from the moment of sending
//   (Date.now() just before send(): an absolute time that is VALUE ms ahead of the sender)
// JSON lines:
//   {"event":"done","sent":N,"outcomes":["accepted"|"released"|"rejected"|"modified", ...],
//    "sent_at":[ms, ...],"settled_at":[ms, ...],"annotations":[{NAME: VALUE sent}, ...]}
//   (in send order; ms since the epoch, Date.now() just before send() and when the outcome
//   arrived; annotations: the number each annotation carried, relative ones resolved)

const fs = require('fs');
const u = require('../lib/rhea_util.js');

const types = u.rhea.types;
const args = u.parseArgs(process.argv.slice(2), ['port', 'address', 'spec']);
const spec = JSON.parse(fs.readFileSync(args.spec, 'utf8'));
const outcomes = new Array(spec.length).fill(null);
const sentAt = new Array(spec.length).fill(null);
const settledAt = new Array(spec.length).fill(null);
const annotationsSent = spec.map(() => ({}));
let sent = 0;
let settled = 0;

u.deadline(Number(args.timeout || 30), () => sent + ' of ' + spec.length + ' sent, ' + settled + ' settled');
const container = u.rhea.create_container({id: args.container || 'sub-rhea-send-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const sender = connection.open_sender({target: {address: args.address}});

function typed(type, value, now) {
    if (type.endsWith('+')) return typed(type.slice(0, -1), now + value, now);
    switch (type) {
    case 'date': return new Date(value);
    case 'timestamp': return types.wrap_timestamp(value);
    case 'long': return types.wrap_long(value);
    case 'ulong': return types.wrap_ulong(value);
    default: u.fail('unknown annotation type ' + type); return null;
    }
}

function message(s, i, now) {
    const m = {body: s.body === undefined ? null : s.body};
    if (s.props) m.application_properties = s.props;
    for (const k of ['subject', 'durable', 'ttl']) {
        if (s[k] !== undefined) m[k] = s[k];
    }
    if (s.annotations) {
        m.message_annotations = {};
        for (const [k, [type, value]] of Object.entries(s.annotations)) {
            m.message_annotations[k] = typed(type, value, now);
            annotationsSent[i][k] = type.endsWith('+') ? now + value : value;
        }
    }
    return m;
}

function outcome(ctx, what) {
    const i = ctx.delivery.__index;
    if (i === undefined || outcomes[i] !== null) return;
    outcomes[i] = what;
    settledAt[i] = Date.now();
    if (++settled === spec.length) {
        u.emit({event: 'done', sent: sent, outcomes: outcomes, sent_at: sentAt,
            settled_at: settledAt, annotations: annotationsSent});
        u.closeAndExit(connection, 0);
    }
}

sender.on('sendable', (ctx) => {
    while (ctx.sender.sendable() && sent < spec.length) {
        const now = Date.now();
        const m = message(spec[sent], sent, now);
        sentAt[sent] = now;
        const d = ctx.sender.send(m);
        d.__index = sent;
        sent++;
    }
});
sender.on('accepted', (ctx) => outcome(ctx, 'accepted'));
sender.on('rejected', (ctx) => outcome(ctx, 'rejected'));
sender.on('released', (ctx) => outcome(ctx, 'released'));
sender.on('modified', (ctx) => outcome(ctx, 'modified'));
if (spec.length === 0) {
    u.emit({event: 'done', sent: 0, outcomes: [], sent_at: [], settled_at: [], annotations: []});
    u.closeAndExit(connection, 0);
}
