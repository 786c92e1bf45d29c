'use strict';
// A rhea worker for scenario 24 (lock expiry); the twin of sub_proton_worker.py, with the same
// options and JSON lines.
//
// It grants --credit once (credit_window 0: no automatic top-up, so a worker holding a
// message takes no other) and does with its k-th delivery what the k-th entry of --plan says
// (the last entry repeats):
//   accept            accept it
//   hold              never settle it; when the broker settles it (the receiver's `settled`
//                     event: delivery.remote_settled, delivery.remote_state), report that.
//                     --count waits for the broker to settle every held delivery
//   hold-late-accept  as hold, then delivery.accept() once the broker has settled it (rhea
//                     writes no disposition for a delivery the peer has settled)
//   freeze-accept     block the event loop (no I/O at all) until the file --go exists, then
//                     accept it: rhea has not read the broker's settlement, which may be
//                     waiting in the socket, so the accept goes on the wire. Then attach a
//                     receiver (no credit) to --sync-address and wait for its attach reply:
//                     the broker handles a connection's frames in order
//   wait-release      hold it until the file --go exists, then release it and add 1 credit
//
// usage: node sub_rhea_worker.js PORT ADDRESS [--credit N] [--plan A,B,...] [--go FILE]
//        [--sync-address ADDR] [--count N] [--linger S] [--timeout S]
//
// JSON lines: as sub_proton_worker.py.

const fs = require('fs');
const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address']);
const credit = Number(args.credit || 1);
const plan = String(args.plan || 'accept').split(',');
const wantCount = args.count === undefined ? null : Number(args.count);
const linger = Number(args.linger || 0.7);
let count = 0;
let finishing = false;
let syncing = false;
let held = 0; // held deliveries the broker has not settled yet
let lingering = false;
const waitingRelease = [];

u.deadline(Number(args.timeout || 30), () => count + ' received');
const container = u.rhea.create_container({id: 'sub-rhea-worker-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const receiver = connection.open_receiver({source: {address: args.address}, credit_window: 0,
    autoaccept: false});

function finish() {
    if (finishing) return;
    finishing = true;
    u.emit({event: 'done', count: count});
    u.closeAndExit(connection, 0);
}

function outcomeName(state) {
    if (!state) return null;
    const c = state.constructor;
    return c && c.composite_type ? c.composite_type : String(state);
}

function sleepMs(ms) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

receiver.on('receiver_open', (ctx) => {
    u.emit({event: 'ready', t: Date.now() / 1000}); // before the credit: before any delivery
    ctx.receiver.add_credit(credit);
});

receiver.on('message', (ctx) => {
    if (finishing) return;
    const m = ctx.message;
    const d = ctx.delivery;
    const action = plan[Math.min(count, plan.length - 1)];
    count++;
    const props = m.application_properties || {};
    const seq = props.seq === undefined ? null : props.seq;
    d.__seq = seq;
    d.__action = action;
    u.emit({event: 'msg', k: count, seq: seq, body: m.body === undefined ? null : m.body,
        dc: m.delivery_count || 0, settled: Boolean(d.remote_settled), action: action,
        t: Date.now() / 1000});
    if (action === 'accept') {
        d.accept();
    } else if (action === 'hold' || action === 'hold-late-accept') {
        held++; // the receiver's 'settled' event reports the broker's settlement
    } else if (action === 'freeze-accept') {
        const deadline = Date.now() + 20000;
        while (!fs.existsSync(args.go)) { // no event processing meanwhile
            if (Date.now() > deadline) {
                u.fail('freeze-accept: ' + args.go + ' did not appear within 20s');
                return;
            }
            sleepMs(10);
        }
        const before = Boolean(d.remote_settled);
        d.accept();
        u.emit({event: 'late-accept', seq: seq, remote_settled_before: before, t: Date.now() / 1000});
        const sync = connection.open_receiver({source: {address: args.sync_address || 's24.sync'},
            credit_window: 0, autoaccept: false});
        syncing = true;
        sync.on('receiver_open', () => {
            u.emit({event: 'synced'});
            syncing = false;
            maybeDone();
        });
    } else if (action === 'wait-release') {
        waitingRelease.push(d);
    } else {
        u.fail('unknown action ' + action);
        return;
    }
    maybeDone();
});

// After a freeze, the event loop's clock is stale: a timer set now would fire at once. So the
// linger starts once the sync attach is answered, and once the broker has settled every
// delivery we hold.
function maybeDone() {
    if (wantCount !== null && count === wantCount && !syncing && held === 0 && !lingering) {
        lingering = true;
        setTimeout(finish, linger * 1000);
    }
}

receiver.on('settled', (ctx) => {
    const d = ctx.delivery;
    if (d.__action !== 'hold' && d.__action !== 'hold-late-accept') return;
    u.emit({event: 'settled', seq: d.__seq, state: outcomeName(d.remote_state),
        settled: Boolean(d.remote_settled), t: Date.now() / 1000});
    if (d.__action === 'hold-late-accept') {
        d.accept();
        u.emit({event: 'late-accept', seq: d.__seq, remote_settled_before: true, t: Date.now() / 1000});
    }
    held--;
    maybeDone();
});

setInterval(() => {
    if (waitingRelease.length && args.go && fs.existsSync(args.go)) {
        for (const d of waitingRelease.splice(0)) {
            d.release();
            u.emit({event: 'released', seq: d.__seq});
            receiver.add_credit(1);
        }
    }
}, 20);

process.on('SIGTERM', finish);
