'use strict';
// Drains a queue holding fewer messages than the credit: receiver.drain = true; add_credit(N).
// The broker must send what it has and then a flow with drain set and credit 0
// ('receiver_drained'). Then a second drain on the now empty queue.
//
// usage: node rhea_drain.js PORT ADDRESS CREDIT
// JSON lines: {"event":"drained","round":1|2,"count":N,"ms":T,"credit":C}

const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address', 'credit']);
const credit = Number(args.credit);
let count = 0;
let round = 0;
let started = 0;

u.deadline(20, () => 'round ' + round + ', ' + count + ' received');
const container = u.rhea.create_container({id: 'rhea-drain-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const receiver = connection.open_receiver({source: {address: args.address}, credit_window: 0});

function drain() {
    round++;
    started = Date.now();
    receiver.drain = true;
    receiver.add_credit(credit);
}

receiver.on('receiver_open', drain);
receiver.on('message', () => { count++; });
receiver.on('receiver_drained', (ctx) => {
    u.emit({event: 'drained', round: round, count: count, ms: Date.now() - started, credit: ctx.receiver.credit});
    if (round === 1) drain();
    else u.closeAndExit(connection, 0);
});
