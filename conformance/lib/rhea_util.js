'use strict';
// Helpers for rhea client processes: JSON-line output (the protocol of harness.Child), a hard
// deadline, connections without reconnect, argument parsing, and a hook that keeps each
// received message's raw bytes so typed values can be read with rhea's own decoder.

const rhea = require('rhea');

function replacer(key, value) {
    if (typeof value === 'bigint') return value.toString();
    if (value && value.type === 'Buffer' && Array.isArray(value.data)) {
        return Buffer.from(value.data).toString('hex');
    }
    return value;
}

function emit(obj) {
    process.stdout.write(JSON.stringify(obj, replacer) + '\n');
}

let exiting = false;
let closing = false;

function exit(code) {
    if (exiting) return;
    exiting = true;
    // Let stdout drain before leaving.
    process.stdout.write('', () => process.exit(code));
    setTimeout(() => process.exit(code), 500).unref();
}

function fail(message) {
    emit({error: String(message)});
    exit(1);
}

function deadline(seconds, progress) {
    const t = setTimeout(() => {
        fail('timed out after ' + seconds + 's' + (progress ? ': ' + progress() : ''));
    }, seconds * 1000);
    return t;
}

// "--name value" and "--flag" options after positional arguments.
function parseArgs(argv, positional) {
    const out = {_: []};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a.startsWith('--')) {
            const key = a.slice(2).replace(/-/g, '_');
            if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
                out[key] = argv[++i];
            } else {
                out[key] = true;
            }
        } else {
            out._.push(a);
        }
    }
    positional.forEach((name, i) => {
        if (out._[i] === undefined) fail('missing argument ' + name);
        out[name] = out._[i];
    });
    return out;
}

// A connection that reports errors instead of reconnecting.
function connect(container, options) {
    const opts = Object.assign({reconnect: false, host: '127.0.0.1'}, options);
    opts.port = Number(opts.port);
    return container.connect(opts);
}

// Fail loudly on any error event from the broker.
function failOnErrors(container) {
    container.on('connection_error', (ctx) => fail('connection error: ' + describe(ctx.connection.error || ctx.error)));
    container.on('error', (err) => fail('error: ' + describe(err)));
    container.on('disconnected', (ctx) => {
        if (!exiting && !closing) fail('disconnected: ' + describe(ctx.error));
    });
    container.on('sender_error', (ctx) => fail('sender detached with error: ' + describe(ctx.sender.error)));
    container.on('receiver_error', (ctx) => fail('receiver detached with error: ' + describe(ctx.receiver.error)));
    container.on('session_error', (ctx) => fail('session ended with error: ' + describe(ctx.session.error)));
}

function describe(e) {
    if (!e) return 'no error information';
    if (e.condition || e.description) return (e.condition || '') + ': ' + (e.description || '');
    return String(e.message || e);
}

// Keep the encoded message next to each decoded one (`message.__raw`): rhea's 'message'
// event only carries the decoded form, whose application-properties have lost their types.
function captureRawMessages() {
    const messageModule = require('rhea/lib/message.js');
    const original = messageModule.decode;
    messageModule.decode = function (buffer) {
        const m = original.apply(this, arguments);
        Object.defineProperty(m, '__raw', {value: Buffer.from(buffer), enumerable: false});
        return m;
    };
}

// Close the connection (if open) and exit once the close completes, or after 2 s.
function closeAndExit(connection, code) {
    if (exiting || closing) return;
    closing = true;
    if (connection && connection.is_open()) {
        connection.once('connection_close', () => exit(code));
        connection.once('disconnected', () => exit(code));
        connection.close();
        setTimeout(() => exit(code), 2000);
    } else {
        exit(code);
    }
}

module.exports = {rhea, emit, exit, fail, deadline, parseArgs, connect, failOnErrors,
    describe, captureRawMessages, closeAndExit, isClosing: () => closing || exiting};
