'use strict';
// A rhea durable subscriber for scenario 23: one receiver with a fixed container-id and link
// name, the way rhea's durable-subscription example attaches: source {address, durable: 2
// (unsettled-state), expiry_policy: 'never'}. It accepts what it receives (except --hold
// seqs), and ends its link with detach() (closed=false: the subscription stays) or close()
// (closed=true: the subscription ends).
//
// usage: node sub_rhea_durable.js PORT ADDRESS --container ID --name LINK [options]
//   ADDRESS "-"           attach with a null source (looks a subscription up by its identity)
//   --selector EXPR       a JMS selector (rhea's filter.selector)
//   --credit N            credit granted once at attach (default 200)
//   --hold S1,S2          leave the messages with these seqs unsettled
//   --count N             once N messages arrived (0: at once), wait --linger seconds (default
//                         0.7) for extras, then end the link as --end says
//   --end detach|close    how the link ends (default detach)
//   --expect-refusal      the broker must refuse the attach: report how, then exit 0
//   --timeout S
//
// JSON lines:
//   {"event":"ready","source":{address,durable,expiry_policy,filter,capabilities}|null}
//   {"event":"msg","seq","body","subject","dc","settled","held","t"}
//   {"event":"ended","how":"detach"|"close","remote_closed":bool}   the broker answered
//   {"event":"refused","source_null":bool,"condition","description"}
//   {"event":"done","count":N}

const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address']);
if (!args.container || !args.name) u.fail('--container and --name are required');
const credit = Number(args.credit || 200);
const hold = new Set(String(args.hold || '').split(',').filter((s) => s !== '').map(Number));
const wantCount = args.count === undefined ? null : Number(args.count);
const linger = Number(args.linger || 0.7);
const end = args.end || 'detach';
const expectRefusal = Boolean(args.expect_refusal);
let count = 0;
let ending = false;
let opened = null;

u.deadline(Number(args.timeout || 30), () => count + ' received');
const container = u.rhea.create_container({id: args.container});
const connection = u.connect(container, {port: args.port});

container.on('connection_error', (ctx) => u.fail('connection error: ' + u.describe(ctx.connection.error)));
container.on('error', (err) => u.fail('error: ' + u.describe(err)));
container.on('disconnected', (ctx) => {
    if (!u.isClosing()) u.fail('disconnected: ' + u.describe(ctx.error));
});
container.on('session_error', (ctx) => u.fail('session ended with error: ' + u.describe(ctx.session.error)));

const opts = {name: args.name, credit_window: 0, autoaccept: false};
if (args.address !== '-') {
    opts.source = {address: args.address, durable: 2, expiry_policy: 'never'};
    if (args.selector) opts.source.filter = u.rhea.filter.selector(args.selector);
}
const receiver = connection.open_receiver(opts);

function plain(v) {
    if (v === undefined || v === null) return null;
    if (typeof v === 'bigint') return v.toString();
    if (Buffer.isBuffer(v)) return v.toString('hex');
    if (Array.isArray(v)) return v.map(plain);
    if (typeof v === 'object' && v.type !== undefined && v.type.typecode !== undefined) return plain(v.value);
    if (typeof v === 'object' && v.descriptor !== undefined) {
        return {descriptor: plain(v.descriptor), value: plain(v.value)};
    }
    if (typeof v === 'object') {
        const out = {};
        for (const [k, x] of Object.entries(v)) out[k] = plain(x);
        return out;
    }
    return v;
}

// rhea keeps a null source of the attach reply as a typed null (a truthy object).
function isNull(s) {
    return !s || (s.type !== undefined && s.type.name === 'Null' && s.value === null);
}

function sourceOf(s) {
    if (isNull(s)) return null;
    return {address: s.address === undefined ? null : s.address,
        durable: s.durable === undefined ? null : Number(s.durable),
        expiry_policy: s.expiry_policy === undefined ? null : String(s.expiry_policy),
        filter: s.filter ? plain(s.filter) : null,
        capabilities: s.capabilities ? plain(s.capabilities) : null};
}

function finish() {
    u.emit({event: 'done', count: count});
    u.closeAndExit(connection, 0);
}

function endLink() {
    if (ending) return;
    ending = true;
    if (end === 'close') receiver.close();
    else receiver.detach();
}

receiver.on('receiver_open', (ctx) => {
    opened = isNull(ctx.receiver.remote.attach.source) ? null : ctx.receiver.remote.attach.source;
    u.emit({event: 'ready', source: sourceOf(opened)});
    if (expectRefusal) return; // the detach with the error follows
    ctx.receiver.add_credit(credit);
    if (wantCount === 0) setTimeout(endLink, linger * 1000);
});

receiver.on('receiver_error', (ctx) => {
    const e = ctx.receiver.error || {};
    if (expectRefusal && !ending) {
        ending = true;
        u.emit({event: 'refused', source_null: opened === null,
            condition: e.condition === undefined ? null : String(e.condition),
            description: e.description === undefined ? null : String(e.description)});
        finish();
        return;
    }
    u.fail('receiver detached with error: ' + u.describe(e));
});

receiver.on('receiver_close', (ctx) => {
    const d = ctx.receiver.remote.detach || {};
    if (d.error) return; // receiver_error reported it
    if (!ending) {
        u.fail('the broker detached the receiver');
        return;
    }
    u.emit({event: 'ended', how: end, remote_closed: Boolean(d.closed)});
    finish();
});

receiver.on('message', (ctx) => {
    if (ending) return;
    count++;
    const m = ctx.message;
    const props = m.application_properties || {};
    const seq = props.seq === undefined ? null : props.seq;
    const held = hold.has(seq);
    u.emit({event: 'msg', seq: seq, body: m.body === undefined ? null : m.body,
        subject: m.subject === undefined ? null : m.subject, dc: m.delivery_count || 0,
        settled: Boolean(ctx.delivery.remote_settled), held: held, t: Date.now() / 1000});
    if (!held && !ctx.delivery.remote_settled) ctx.delivery.accept();
    if (wantCount !== null && count === wantCount) setTimeout(endLink, linger * 1000);
});

process.on('SIGTERM', finish);
