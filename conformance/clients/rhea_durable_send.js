'use strict';
// Sends COUNT durable messages (header durable = true) with rhea and waits until the broker
// has accepted every one of them; then closes the connection and exits 0.
//
// usage: node rhea_durable_send.js PORT ADDRESS COUNT [--tag TAG] [--timeout S]
//
// Message i has body "TAG-i" (i zero-padded to 5 digits; TAG defaults to "rhea") and
// application-properties {seq: i}. JSON lines:
//   {"event":"sent","count":N,"accepted":N}   once every message is accepted
// Any other outcome (rejected, released, modified) is an error line and exit 1.

const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address', 'count']);
const count = Number(args.count);
const tag = String(args.tag || 'rhea');
let sent = 0;
let accepted = 0;

u.deadline(Number(args.timeout || 60), () => sent + ' of ' + count + ' sent, ' + accepted + ' accepted');
const container = u.rhea.create_container({id: 'rhea-durable-send-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port});
const sender = connection.open_sender({target: {address: args.address}});

function body(i) {
    return tag + '-' + String(i).padStart(5, '0');
}

sender.on('sendable', (ctx) => {
    while (ctx.sender.sendable() && sent < count) {
        ctx.sender.send({durable: true, body: body(sent), application_properties: {seq: sent}});
        sent++;
    }
});
sender.on('accepted', () => {
    if (++accepted === count) {
        u.emit({event: 'sent', count: sent, accepted: accepted});
        u.closeAndExit(connection, 0);
    }
});
sender.on('rejected', (ctx) => u.fail('rejected after ' + accepted + ' accepted: ' +
    u.describe(ctx.delivery.remote_state && ctx.delivery.remote_state.error)));
sender.on('released', () => u.fail('released or modified after ' + accepted + ' accepted'));
