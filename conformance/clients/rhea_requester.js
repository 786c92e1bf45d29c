'use strict';
// A rhea requester: a receiver with a dynamic source ({source:{dynamic:true}}), whose assigned
// address goes in reply_to of COUNT requests to each request queue. Checks every reply:
// correlation-id, upper-cased body, and the "via" property naming how it was answered.
//
// usage: node rhea_requester.js PORT NAMED_QUEUE ANON_QUEUE COUNT
// JSON lines: {"event":"address","address":...}, {"event":"done","replies":N}

const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'named', 'anon', 'count']);
const count = Number(args.count);
const expected = new Map(); // correlation-id -> {body, via}
let replies = 0;
let replyTo = null;

u.deadline(60, () => replies + ' of ' + 2 * count + ' replies');
const container = u.rhea.create_container({id: 'rhea-requester-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const receiver = connection.open_receiver({source: {dynamic: true}, credit_window: 50});

receiver.on('receiver_open', (ctx) => {
    replyTo = ctx.receiver.source.address;
    u.emit({event: 'address', address: replyTo});
    if (!replyTo) return u.fail('the broker assigned no address to the dynamic source');
    for (const [queue, via] of [[args.named, 'named'], [args.anon, 'anon']]) {
        const sender = connection.open_sender({target: {address: queue}});
        let sent = 0;
        sender.on('sendable', (c) => {
            while (c.sender.sendable() && sent < count) {
                const id = 'rhea-' + via + '-' + sent;
                const body = 'request ' + via + ' ' + sent;
                expected.set(id, {body: body.toUpperCase(), via: via});
                c.sender.send({body: body, reply_to: replyTo, correlation_id: id});
                sent++;
            }
        });
    }
});

receiver.on('message', (ctx) => {
    const m = ctx.message;
    const want = expected.get(m.correlation_id);
    if (!want) return u.fail('unexpected reply ' + JSON.stringify(m.correlation_id) + ': ' + JSON.stringify(m.body));
    const via = (m.application_properties || {}).via;
    if (m.body !== want.body || via !== want.via) {
        return u.fail('reply ' + m.correlation_id + ' is ' + JSON.stringify([m.body, via]) +
            ', expected ' + JSON.stringify([want.body, want.via]));
    }
    expected.delete(m.correlation_id);
    replies++;
    if (replies === 2 * count) {
        // A duplicate would show up within this half second as an unexpected reply.
        setTimeout(() => {
            u.emit({event: 'done', replies: replies, address: replyTo});
            u.closeAndExit(connection, 0);
        }, 500);
    }
});
