'use strict';
// A rhea receiver for the routing scenarios (16 to 22). Each message is settled as its
// application-property `action` says (default accept):
//   accept | reject (with error {condition: "ferry-test:refused", description: "rhea: " +
//   <property `why`>} when the message has `why`, else with no error) | release | modify-failed
//   (modified, delivery-failed) | hold (never settled) | detach (the link is closed without
//   settling it, and a new receiver is attached to the same address)
// Pre-settled deliveries (browsing) are never settled.
//
// usage: node route_rhea_recv.js PORT ADDRESS [--credit N] [--browse] [--count N]
//        [--linger S] [--idle-exit S] [--action A] [--timeout S]
//   --credit N     credit window (default 100)
//   --action A     settle every message with A, whatever its `action` property says (e.g. a
//                  consumer of a dead-letter queue that must not act out the original's)
//   --browse       source distribution-mode copy
//   --count N      once N messages arrived, wait --linger seconds (default 0.5) for extras,
//                  then close and exit
//   --idle-exit S  close and exit once nothing arrived for S seconds (since the attach, or the
//                  last message)
//
// JSON lines:
//   {"event":"ready","address":...,"distribution_mode":...}   each time a receiver is attached
//   {"event":"msg","seq","body","dc","settled","priority","ttl","subject","first_acquirer",
//    "annotations","props","action","t"}   priority and ttl (ms) are null when the header has
//                                            none; props: the application-properties; action:
//                                            what this receiver did with it
//   {"event":"done","count":N}        before closing (also on SIGTERM)

const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address']);
const credit = Number(args.credit || 100);
const wantCount = args.count === undefined ? null : Number(args.count);
const linger = Number(args.linger || 0.5);
const idleExit = args.idle_exit === undefined ? null : Number(args.idle_exit);
let count = 0;
let lastAt = null;
let finishing = false;

u.deadline(Number(args.timeout || 60), () => count + ' received');
const container = u.rhea.create_container({id: 'route-rhea-recv-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});

function attach() {
    const source = {address: args.address};
    if (args.browse) source.distribution_mode = 'copy';
    return connection.open_receiver({source: source, credit_window: credit, autoaccept: false});
}

attach();

function finish() {
    if (finishing) return;
    finishing = true;
    u.emit({event: 'done', count: count});
    u.closeAndExit(connection, 0);
}

container.on('receiver_open', (ctx) => {
    lastAt = Date.now();
    const src = ctx.receiver.remote.attach.source || {};
    u.emit({event: 'ready', address: src.address === undefined ? null : src.address,
        distribution_mode: src.distribution_mode == null ? null : String(src.distribution_mode)});
});

container.on('receiver_close', (ctx) => {
    // Closed by us (action detach): attach again. A detach by the broker with an error is a
    // failure (failOnErrors); one without is reported too.
    if (finishing || u.isClosing()) return;
    if (!ctx.receiver.__closedByUs) {
        u.fail('the broker detached the receiver');
        return;
    }
    attach();
});

function plain(v) {
    if (v === undefined) return null;
    if (typeof v === 'bigint') return v.toString();
    // A typed value (rhea.types wrapper): its plain value.
    if (v && typeof v === 'object' && v.value !== undefined && v.typecode !== undefined) {
        return plain(v.value);
    }
    return v;
}

container.on('message', (ctx) => {
    if (finishing) return;
    count++;
    lastAt = Date.now();
    const m = ctx.message;
    const props = m.application_properties || {};
    const action = args.action || props.action || 'accept';
    const annotations = {};
    for (const [k, v] of Object.entries(m.message_annotations || {})) annotations[k] = plain(v);
    const appProps = {};
    for (const [k, v] of Object.entries(props)) appProps[k] = plain(v);
    const settled = Boolean(ctx.delivery.remote_settled);
    u.emit({event: 'msg', seq: props.seq === undefined ? null : props.seq, body: m.body,
        dc: m.delivery_count || 0, settled: settled,
        priority: m.priority === undefined ? null : m.priority,
        ttl: m.ttl === undefined ? null : m.ttl,
        subject: m.subject === undefined ? null : m.subject,
        first_acquirer: m.first_acquirer === undefined ? null : m.first_acquirer,
        annotations: annotations, props: appProps, action: action, t: Date.now() / 1000});
    if (!settled) {
        const d = ctx.delivery;
        if (action === 'accept') d.accept();
        else if (action === 'reject') {
            if (props.why !== undefined) {
                d.reject({condition: 'ferry-test:refused', description: 'rhea: ' + props.why});
            } else {
                d.reject();
            }
        } else if (action === 'release') d.release();
        else if (action === 'modify-failed') d.modified({delivery_failed: true});
        else if (action === 'detach') {
            ctx.receiver.__closedByUs = true;
            ctx.receiver.close();
        } else if (action !== 'hold') {
            u.fail('unknown action ' + action);
            return;
        }
    }
    if (wantCount !== null && count === wantCount) setTimeout(finish, linger * 1000);
});

if (idleExit !== null) {
    setInterval(() => {
        if (lastAt !== null && Date.now() - lastAt > idleExit * 1000) finish();
    }, 50);
}

process.on('SIGTERM', finish);
