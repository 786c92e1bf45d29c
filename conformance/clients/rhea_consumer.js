'use strict';
// A rhea consumer process for the scenarios; the same JSON lines as proton_consumer.py:
//   {"event":"ready"}, {"event":"msg","body":...,"seq":...,"dc":N,"settled":bool,"held":bool},
//   {"event":"stopped","count":N} on SIGTERM (after closing the connection).
//
// usage: node rhea_consumer.js PORT ADDRESS [--credit N] [--hold] [--timeout S]
//        [--selector EXPR]   a JMS selector filter (rhea's filter.selector: numeric descriptor)

const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address']);
const credit = Number(args.credit || 10);
const hold = Boolean(args.hold);
let count = 0;

u.deadline(Number(args.timeout || 120), () => count + ' received');
const container = u.rhea.create_container({id: 'rhea-consumer-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const source = {address: args.address};
if (args.selector) source.filter = u.rhea.filter.selector(args.selector);
connection.open_receiver({source: source, credit_window: credit, autoaccept: false});

container.on('receiver_open', (ctx) => u.emit({event: 'ready', address: ctx.receiver.source.address,
    filter: Boolean(ctx.receiver.remote.attach.source && ctx.receiver.remote.attach.source.filter)}));
container.on('message', (ctx) => {
    count++;
    const m = ctx.message;
    const props = m.application_properties || {};
    u.emit({event: 'msg', body: m.body, seq: props.seq === undefined ? null : props.seq,
        dc: m.delivery_count || 0, settled: Boolean(ctx.delivery.remote_settled), held: hold,
        t: Date.now() / 1000});
    if (!hold) ctx.delivery.accept();
});

process.on('SIGTERM', () => {
    u.emit({event: 'stopped', count: count});
    u.closeAndExit(connection, 0);
});
