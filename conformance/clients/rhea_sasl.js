'use strict';
// SASL PLAIN with rhea (username + password make rhea use PLAIN).
//
//   node rhea_sasl.js ok PORT USER PASSWORD ADDRESS
//       must connect, then sends one message to ADDRESS and receives it back:
//       {"event":"opened"}, {"event":"roundtrip","body":...}
//   node rhea_sasl.js refused PORT USER PASSWORD
//       must be refused: {"event":"refused","condition":...,"description":...}; exits 1 if
//       the connection opens.

const u = require('../lib/rhea_util.js');

const [mode, port, user, password, address] = process.argv.slice(2);
u.deadline(20);
const container = u.rhea.create_container({id: 'rhea-sasl-' + process.pid});
const connection = u.connect(container, {port: port, username: user, password: password});

if (mode === 'ok') {
    u.failOnErrors(container);
    container.on('connection_open', () => {
        u.emit({event: 'opened'});
        connection.open_receiver({source: {address: address}, credit_window: 10});
        connection.open_sender({target: {address: address}});
    });
    container.on('sendable', (ctx) => {
        if (!ctx.sender.sent_one) {
            ctx.sender.sent_one = true;
            ctx.sender.send({body: 'hello from rhea as ' + user});
        }
    });
    container.on('message', (ctx) => {
        u.emit({event: 'roundtrip', body: ctx.message.body});
        u.closeAndExit(connection, 0);
    });
} else {
    let reported = false;
    const refused = (ctx, why) => {
        if (reported) return;
        reported = true;
        const e = (ctx && (ctx.connection && ctx.connection.error)) || (ctx && ctx.error) || {};
        u.emit({event: 'refused', how: why, condition: e.condition || null, description: e.description || String(e.message || '')});
        u.exit(0);
    };
    container.on('connection_open', () => u.fail('the connection opened with a wrong password'));
    container.on('connection_error', (ctx) => refused(ctx, 'connection_error'));
    container.on('disconnected', (ctx) => refused(ctx, 'disconnected'));
    container.on('error', (err) => refused({error: err}, 'error'));
}
