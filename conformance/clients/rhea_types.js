'use strict';
// The rhea side of the typed-value scenarios (9 and 10).
//
//   node rhea_types.js send PORT ADDRESS props|body
//       props: one message whose application-properties hold every "simple" case of
//              typed_cases.json (key = case name); body: one message per case with that value
//              as its amqp-value body (subject = case name). Waits until all are accepted.
//   node rhea_types.js recv PORT ADDRESS COUNT
//       receives COUNT messages and prints, for each, the canonical typed form of its
//       application-properties and amqp-value body as rhea's decoder read them:
//       {"event":"msg","subject":...,"sections":[codes],"props":[...]|null,"body":[...]|null}

const u = require('../lib/rhea_util.js');
const t = require('../lib/amqp_types.js');

const [mode, port, address, arg] = process.argv.slice(2);
if (!arg) u.fail('usage: rhea_types.js send|recv PORT ADDRESS props|body|COUNT');
u.deadline(30);
const container = u.rhea.create_container({id: 'rhea-types-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: port});

function bodyCases(cases) {
    // An amqp-value body of null cannot be sent by Proton (no body section at all), and rhea
    // replaces a described body's own descriptor with the section's: both stay nested only.
    return cases.simple.filter(([n]) => n !== 'null').concat(cases.compound);
}

if (mode === 'send') {
    const cases = t.loadCases();
    const messages = [];
    if (arg === 'props') {
        const props = {};
        for (const [name, c] of cases.simple) props[name] = t.build(c);
        messages.push({subject: 'props', application_properties: props, body: 'typed properties'});
    } else {
        for (const [name, c] of bodyCases(cases)) messages.push({subject: name, body: t.build(c)});
    }
    let next = 0;
    let accepted = 0;
    const sender = connection.open_sender({target: {address: address}});
    sender.on('sendable', (ctx) => {
        while (ctx.sender.sendable() && next < messages.length) ctx.sender.send(messages[next++]);
    });
    sender.on('accepted', () => {
        if (++accepted === messages.length) {
            u.emit({event: 'sent', count: accepted});
            u.closeAndExit(connection, 0);
        }
    });
    sender.on('rejected', (ctx) => u.fail('rejected: ' + u.describe(ctx.delivery.remote_state && ctx.delivery.remote_state.error)));
    sender.on('released', () => u.fail('released'));
} else if (mode === 'recv') {
    u.captureRawMessages();
    const count = Number(arg);
    let got = 0;
    connection.open_receiver({source: {address: address}, credit_window: 100});
    container.on('receiver_open', () => u.emit({event: 'ready'}));
    container.on('message', (ctx) => {
        const raw = ctx.message.__raw;
        if (!raw) return u.fail('raw message bytes not captured');
        let secs;
        try {
            secs = t.sections(raw);
        } catch (e) {
            return u.fail('rhea could not decode the message: ' + e);
        }
        const props = secs.find((s) => s.code === 0x74);
        const body = secs.find((s) => s.code === 0x77);
        u.emit({event: 'msg', subject: ctx.message.subject, sections: secs.map((s) => s.code),
            props: props ? t.canon(props.typed, true) : null,
            body: body ? t.canon(body.typed, true) : null});
        if (++got === count) u.closeAndExit(connection, 0);
    });
} else {
    u.fail('unknown mode ' + mode);
}
