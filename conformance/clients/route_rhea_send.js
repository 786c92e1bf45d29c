'use strict';
// A rhea sender for the routing scenarios (16 to 22): sends the messages listed in a JSON file,
// in order, on one link, waits for the outcome of each, then closes and exits 0.
//
// usage: node route_rhea_send.js PORT ADDRESS SPECFILE [--timeout S]
//
// SPECFILE holds a list of messages, each an object with any of:
//   body, props (application-properties), subject, priority, ttl (ms), to,
//   absolute_expiry_time (ms since the epoch), durable
// JSON lines:
//   {"event":"done","sent":N,"outcomes":["accepted"|"released"|"rejected"|"modified", ...]}
// (outcomes in send order; rhea reports modified as released).

const fs = require('fs');
const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address', 'spec']);
const spec = JSON.parse(fs.readFileSync(args.spec, 'utf8'));
const outcomes = new Array(spec.length).fill(null);
let sent = 0;
let settled = 0;

u.deadline(Number(args.timeout || 30), () => sent + ' of ' + spec.length + ' sent, ' + settled + ' settled');
const container = u.rhea.create_container({id: 'route-rhea-send-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const sender = connection.open_sender({target: {address: args.address}});

function message(s) {
    const m = {body: s.body === undefined ? null : s.body};
    if (s.props) m.application_properties = s.props;
    for (const k of ['subject', 'priority', 'ttl', 'to', 'durable']) {
        if (s[k] !== undefined) m[k] = s[k];
    }
    if (s.absolute_expiry_time !== undefined) m.absolute_expiry_time = new Date(s.absolute_expiry_time);
    return m;
}

function outcome(ctx, what) {
    const i = ctx.delivery.__index;
    if (i === undefined || outcomes[i] !== null) return;
    outcomes[i] = what;
    if (++settled === spec.length) {
        u.emit({event: 'done', sent: sent, outcomes: outcomes});
        u.closeAndExit(connection, 0);
    }
}

sender.on('sendable', (ctx) => {
    while (ctx.sender.sendable() && sent < spec.length) {
        const d = ctx.sender.send(message(spec[sent]));
        d.__index = sent;
        sent++;
    }
});
sender.on('accepted', (ctx) => outcome(ctx, 'accepted'));
sender.on('rejected', (ctx) => outcome(ctx, 'rejected'));
sender.on('released', (ctx) => outcome(ctx, 'released'));
sender.on('modified', (ctx) => outcome(ctx, 'modified'));
if (spec.length === 0) {
    u.emit({event: 'done', sent: 0, outcomes: []});
    u.closeAndExit(connection, 0);
}
