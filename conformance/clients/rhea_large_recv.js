'use strict';
// Receives one message with a data body and reports its size and SHA-256, plus the
// max-frame-size the broker sent in its open.
//
// usage: node rhea_large_recv.js PORT ADDRESS MAX_FRAME_SIZE
// JSON line: {"event":"msg","size":N,"sha256":hex,"remote_max_frame_size":N}

const crypto = require('crypto');
const u = require('../lib/rhea_util.js');

const args = u.parseArgs(process.argv.slice(2), ['port', 'address', 'max_frame_size']);
u.deadline(60);
const container = u.rhea.create_container({id: 'rhea-large-' + process.pid});
u.failOnErrors(container);
const connection = u.connect(container, {port: args.port, max_frame_size: Number(args.max_frame_size)});
connection.open_receiver({source: {address: args.address}, credit_window: 1});
container.on('receiver_open', () => u.emit({event: 'ready'}));
container.on('message', (ctx) => {
    const body = ctx.message.body;
    const data = body && body.typecode === 0x75 ? body.content : body;
    if (!Buffer.isBuffer(data)) return u.fail('body is not a data section: ' + typeof body);
    const remote = ctx.connection.remote.open;
    u.emit({event: 'msg', size: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex'),
        remote_max_frame_size: remote.max_frame_size});
    u.closeAndExit(connection, 0);
});
