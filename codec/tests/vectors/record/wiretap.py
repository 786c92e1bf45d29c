"""A tiny logging TCP proxy used to capture AMQP traffic between a real
client and a real server running on this machine.

    tap = Tap(upstream_port)     # listens on 127.0.0.1:<tap.port>
    ... point the client at tap.port ...
    tap.close()
    tap.events  -> [("c2s"|"s2c", bytes), ...] in the order the proxy read them

Only loopback addresses are used.  Every blocking call has a timeout so a
stuck peer cannot hang the recorder.
"""

import socket
import threading
import time

HOST = "127.0.0.1"


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for_port(port, timeout=10.0):
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Tap:
    """Accepts exactly one connection, forwards it to upstream_port and
    records every chunk read in either direction."""

    def __init__(self, upstream_port, timeout=30.0):
        self.upstream_port = upstream_port
        self.timeout = timeout
        self.events = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(1)
        self._listener.settimeout(timeout)
        self.port = self._listener.getsockname()[1]
        self._threads = []
        self._socks = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        finally:
            self._listener.close()
        try:
            upstream = socket.create_connection((HOST, self.upstream_port), timeout=self.timeout)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.settimeout(self.timeout)
            self._socks.append(s)
        for direction, src, dst in (("c2s", client, upstream), ("s2c", upstream, client)):
            t = threading.Thread(target=self._pump, args=(direction, src, dst), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, direction, src, dst):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                chunk = src.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            # Record before forwarding so the recorded order of the two
            # directions is causal (a reply can only be read after the
            # request that caused it was recorded).
            with self._lock:
                self.events.append((direction, chunk))
            try:
                dst.sendall(chunk)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self, wait=5.0):
        """Wait (bounded) for both directions to finish, then close."""
        self._acceptor.join(wait)
        deadline = time.monotonic() + wait
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            return list(self.events)
