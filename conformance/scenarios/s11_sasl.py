"""Scenario 11: SASL PLAIN with a configured user.

The password hash comes from `ferry passwd --password-stdin` and goes in `[[users]]`. Two
listeners: one offering only PLAIN with `allow_anonymous = "never"`, one with the defaults
(ANONYMOUS and PLAIN). On both, the right password lets Proton (Container.connect with
user/password and allow_insecure_mechs, and the user:password@host URL form) and rhea
(username/password) in, and a message goes through. A wrong password and an unknown user are
refused on both listeners, for Proton and rhea; a client without credentials is refused on the
PLAIN-only listener.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from harness import (FERRY_BIN, Broker, Failure, check, check_eq, log, node_client,  # noqa: E402
                     run_scenario)
from proton import Message  # noqa: E402
from proton_util import ClientError, Run, receive_messages, run, send_messages  # noqa: E402

USER = "alice"
PASSWORD = "c0rrect horse:battery"


class AuthProbe(Run):
    """Connects and reports whether the connection opened or how it was refused."""

    def __init__(self, url, **connect_kw):
        super().__init__(timeout=15)
        self.url = url
        self.connect_kw = connect_kw
        self.opened = False
        self.refusal = None

    def setup(self):
        self.connect(self.url, **self.connect_kw)

    def on_connection_opened(self, event):
        self.opened = True
        self.finish()

    def on_transport_error(self, event):
        c = event.transport.condition
        self.refusal = "%s: %s" % (c.name, c.description) if c else "transport error"
        self.finish()

    def on_transport_closed(self, event):
        if self.refusal is None and not self.opened:
            self.refusal = "closed before open"
        self.finish()


def probe(url, **kw):
    try:
        return run(AuthProbe(url, **kw))
    except ClientError as e:
        raise Failure("Proton probe: %s" % e) from None


def main(workdir):
    hashed = subprocess.run([FERRY_BIN, "passwd", "--password-stdin"], input=PASSWORD.encode(),
                            capture_output=True, timeout=30)
    check(hashed.returncode == 0, "ferry passwd failed: %s" % hashed.stderr.decode())
    phc = hashed.stdout.decode().strip()
    check(phc.startswith("$argon2"), "ferry passwd printed %r" % phc)
    broker = Broker(workdir,
                    listeners=[{"sasl_mechanisms": ["PLAIN"], "allow_anonymous": "never"}, {}],
                    users=[{"name": USER, "password_hash": phc}])

    for i, label in ((0, "PLAIN-only listener"), (1, "default listener")):
        url = broker.url(i)
        port = broker.ports[i]
        address = "s11.secret.%d" % i
        # Proton, right password: keyword arguments to send, the URL form to receive.
        try:
            send_messages(url, address, [Message(body="for alice")], user=USER, password=PASSWORD,
                          allow_insecure_mechs=True)
            host_url = "amqp://%s:%s@127.0.0.1:%d" % (USER, PASSWORD.replace(":", "%3A").replace(" ", "%20"), port)
            got = receive_messages(host_url, address, 1, allowed_mechs="PLAIN")
        except ClientError as e:
            raise Failure("%s: Proton with the right password: %s" % (label, e)) from None
        check_eq([m.body for m in got], ["for alice"], "%s: message through PLAIN-authenticated links" % label)

        # Proton, wrong password / unknown user.
        for user, password, what in ((USER, "wrong", "wrong password"), ("mallory", PASSWORD, "unknown user")):
            p = probe(url, user=user, password=password, allow_insecure_mechs=True)
            check(not p.opened, "%s: Proton with a %s was let in" % (label, what))
            check(p.refusal and "unauthorized" in p.refusal,
                  "%s: Proton with a %s: expected amqp:unauthorized-access, got %r" % (label, what, p.refusal))

        # rhea, right and wrong.
        ok = node_client("rhea-ok-%d" % i, "rhea_sasl.js", ["ok", port, USER, PASSWORD, address + ".rhea"],
                         workdir).expect_success(30)
        check([l["body"] for l in ok if l.get("event") == "roundtrip"] == ["hello from rhea as alice"],
              "%s: rhea with the right password: %s" % (label, ok))
        for user, password, what in ((USER, "wrong", "wrong password"), ("mallory", PASSWORD, "unknown user")):
            lines = node_client("rhea-bad-%d" % i, "rhea_sasl.js", ["refused", port, user, password],
                                workdir).expect_success(30)
            r = [l for l in lines if l.get("event") == "refused"]
            check(r, "%s: rhea with a %s: not refused: %s" % (label, what, lines))
            check(r[0]["condition"] == "amqp:unauthorized-access",
                  "%s: rhea with a %s: expected amqp:unauthorized-access, got %s" % (label, what, r[0]))
        log("%s: PLAIN %s lets Proton and rhea in; wrong password and unknown user refused "
            "(amqp:unauthorized-access)" % (label, USER))

    # No credentials: refused where anonymous access is off, allowed on the default listener.
    p = probe(broker.url(0))
    check(not p.opened, "PLAIN-only listener: Proton without credentials was let in")
    p = probe(broker.url(1))
    check(p.opened, "default listener: Proton without credentials (ANONYMOUS) refused: %s" % p.refusal)
    log("without credentials: refused on the PLAIN-only listener, ANONYMOUS on the default one")
    broker.check_alive()


if __name__ == "__main__":
    run_scenario(main)
