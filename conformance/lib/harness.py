"""Shared machinery of the conformance scenarios: a Ferry broker per scenario on free loopback
ports, child client processes speaking JSON lines, bounded waits, and the scenario entry point.

Everything a scenario starts is recorded (PID and kernel start time) in the directory named
by FERRY_CONFORMANCE_PIDDIR, so run.sh can kill leftovers by PID if a scenario itself is
killed; the scenario kills its own processes on every exit path.
"""

import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE = os.path.dirname(HERE)
ROOT = os.path.dirname(CONFORMANCE)
CLIENTS = os.path.join(CONFORMANCE, "clients")
FERRY_BIN = os.environ.get("FERRY_BIN", os.path.join(ROOT, "target", "release", "ferry"))
PIDDIR = os.environ.get("FERRY_CONFORMANCE_PIDDIR")
PY = "/usr/bin/python3"  # Debian's interpreter: python3-qpid-proton is installed for it
NODE = os.environ.get("NODE", "node")

if CLIENTS not in sys.path:
    sys.path.insert(0, CLIENTS)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


class Failure(Exception):
    """A scenario assertion failed."""


def check(cond, message):
    if not cond:
        raise Failure(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, expected, actual))


def log(*parts):
    print(*parts, flush=True)


# ---------------------------------------------------------------------------------------------
# Ports and processes


def free_port():
    """A port the kernel says is free on 127.0.0.1 right now (bind to 0, read, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout, proc=None):
    """Waits until 127.0.0.1:port accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Failure("process %d exited with %s before listening on %d"
                          % (proc.pid, proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Failure("nothing listens on 127.0.0.1:%d after %ss" % (port, timeout))


def _start_time(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), to tell a PID
    we started from a later process that reused the number."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat.rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


_children = []  # every Popen this scenario started
_lock = threading.Lock()


def _record(proc):
    with _lock:
        _children.append(proc)
    if PIDDIR:
        try:
            with open(os.path.join(PIDDIR, str(proc.pid)), "w") as f:
                f.write("%s\n" % (_start_time(proc.pid) or ""))
        except OSError:
            pass


def _forget(proc):
    if PIDDIR:
        try:
            os.unlink(os.path.join(PIDDIR, str(proc.pid)))
        except OSError:
            pass


def stop_process(proc, grace=3.0):
    """Stops one of our children by PID: SIGTERM (after SIGCONT, in case it is stopped),
    then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_process(proc)
    _forget(proc)


def kill_process(proc):
    """SIGKILL by PID, then reap."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _forget(proc)


def _cleanup():
    with _lock:
        procs = list(_children)
    for p in reversed(procs):
        try:
            stop_process(p, grace=2.0)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


atexit.register(_cleanup)


class Child:
    """A client process speaking JSON lines on stdout (one object per line). Lines that are
    not JSON are kept as {"text": line}. stderr goes to a log file shown on failure."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.argv = argv
        self.stderr_path = os.path.join(workdir, "%s.stderr" % name)
        self._stderr = open(self.stderr_path, "wb")
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, env=full_env, cwd=CONFORMANCE)
        _record(self.proc)
        self.lines = queue.Queue()
        self.received = []  # every parsed line, in order
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self):
        return self.proc.pid

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line:
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    obj = {"value": obj}
            except ValueError:
                obj = {"text": line}
            self.lines.put(obj)
        self.lines.put(None)  # end of output

    def next(self, timeout):
        """The next line, or None at end of output. Raises Failure on timeout."""
        try:
            obj = self.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise Failure("%s: no output within %.1fs" % (self.name, timeout)) from None
        if obj is not None:
            self.received.append(obj)
        return obj

    def wait_for(self, predicate, timeout, what):
        """Reads lines until predicate(line) is true; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("%s: timed out after %.1fs waiting for %s" % (self.name, timeout, what))
            obj = self.next(left)
            if obj is None:
                raise Failure("%s exited (code %s) while waiting for %s%s"
                              % (self.name, self.proc.wait(timeout=5), what, self.stderr_tail()))
            if obj.get("error"):
                raise Failure("%s reported an error while waiting for %s: %s"
                              % (self.name, what, obj["error"]))
            if predicate(obj):
                return obj

    def drain_lines(self):
        """Every line already available, without waiting."""
        out = []
        while True:
            try:
                obj = self.lines.get_nowait()
            except queue.Empty:
                return out
            if obj is None:
                self.lines.put(None)
                return out
            self.received.append(obj)
            out.append(obj)

    def finish(self, timeout):
        """Waits for the process to exit by itself; returns (exit code, remaining lines)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process(self.proc)
            raise Failure("%s did not finish within %.1fs%s" % (self.name, timeout, self.stderr_tail()))
        self._reader.join(timeout=5)
        rest = self.drain_lines()
        _forget(self.proc)
        return code, rest

    def expect_success(self, timeout):
        """Waits for exit 0 and returns every line it printed."""
        code, _ = self.finish(timeout)
        errors = [l["error"] for l in self.received if l.get("error")]
        if code != 0 or errors:
            raise Failure("%s failed (exit %s): %s%s" % (self.name, code, "; ".join(map(str, errors))
                                                         or "no error line", self.stderr_tail()))
        return self.received

    def stderr_tail(self, n=30):
        try:
            self._stderr.flush()
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = text.strip().splitlines()[-n:]
        return ("\n  [%s stderr]\n  " % self.name + "\n  ".join(lines)) if lines else ""

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self):
        kill_process(self.proc)
        self._reader.join(timeout=2)
        self.drain_lines()

    def stop(self):
        """SIGTERM (the clients close their connection and exit), SIGKILL after 3 s; then
        every line it printed is in `received`."""
        stop_process(self.proc)
        self._reader.join(timeout=2)
        self.drain_lines()


def gather(children, done, timeout, what):
    """Reads lines from several children until done() is true (checked after each batch).
    Lines go to each child's `received`; an error line or an early exit is a Failure."""
    deadline = time.monotonic() + timeout
    while True:
        got = False
        for c in children:
            for obj in c.drain_lines():
                got = True
                if obj.get("error"):
                    raise Failure("%s reported an error: %s" % (c.name, obj["error"]))
        if done():
            return
        for c in children:
            if c.proc.poll() is not None and c.lines.qsize() == 0:
                c._reader.join(timeout=2)
                c.drain_lines()
                if done():
                    return
                raise Failure("%s exited (code %s) while waiting for %s%s"
                              % (c.name, c.proc.returncode, what, c.stderr_tail()))
        if time.monotonic() > deadline:
            raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))
        if not got:
            time.sleep(0.01)


def messages_of(child):
    return [l for l in child.received if l.get("event") == "msg"]


def python_client(name, script, args, workdir):
    return Child(name, [PY, os.path.join(CLIENTS, script)] + [str(a) for a in args], workdir)


def node_client(name, script, args, workdir):
    return Child(name, [NODE, os.path.join(CLIENTS, script)] + [str(a) for a in args], workdir)


# ---------------------------------------------------------------------------------------------
# The broker


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for our values
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError("no TOML for %r" % (v,))


def render_config(broker=None, connection=None, listeners=(), users=()):
    """A Ferry TOML config. Sections are dicts of key -> value."""
    out = []
    for name, table in (("broker", broker), ("connection", connection)):
        if table:
            out.append("[%s]" % name)
            out.extend("%s = %s" % (k, _toml_value(v)) for k, v in table.items())
            out.append("")
    for name, rows in (("listeners", listeners), ("users", users)):
        for row in rows:
            out.append("[[%s]]" % name)
            out.extend("%s = %s" % (k, _toml_value(v)) for k, v in row.items())
            out.append("")
    return "\n".join(out)


class Broker:
    """One `target/release/ferry` process for this scenario.

    `listeners` is a list of dicts of listener settings; each gets `address` =
    127.0.0.1:<free port> unless it has one. With `config=False` the broker runs on its
    built-in defaults with `--listen 127.0.0.1:<free port>` only.
    """

    def __init__(self, workdir, listeners=({},), broker=None, connection=None, users=(),
                 config=True, log_level="info"):
        self.workdir = workdir
        self.ports = []
        self.log_path = os.path.join(workdir, "ferry.log")
        argv = [FERRY_BIN, "--log-level", log_level]
        if config:
            rows = []
            for l in listeners:
                row = dict(l)
                if "address" not in row:
                    row["address"] = "127.0.0.1:%d" % free_port()
                self.ports.append(int(row["address"].rsplit(":", 1)[1]))
                rows.append(row)
            b = {"data_dir": os.path.join(workdir, "data"), "shutdown_grace": "1s"}
            b.update(broker or {})
            self.config_path = os.path.join(workdir, "ferry.toml")
            with open(self.config_path, "w") as f:
                f.write(render_config(b, connection, rows, users))
            argv += ["--config", self.config_path]
        else:
            self.config_path = None
            port = free_port()
            self.ports.append(port)
            argv += ["--listen", "127.0.0.1:%d" % port]
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)  # --log-level decides
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=workdir, env=env)
        _record(self.proc)
        try:
            for p in self.ports:
                wait_port(p, 10.0, self.proc)
        except Failure as e:
            raise Failure("%s%s" % (e, self.log_tail())) from None

    @property
    def port(self):
        return self.ports[0]

    def url(self, i=0):
        return "amqp://127.0.0.1:%d" % self.ports[i]

    @property
    def pid(self):
        return self.proc.pid

    def check_alive(self):
        code = self.proc.poll()
        if code is not None:
            raise Failure("the broker exited with code %s%s" % (code, self.log_tail()))

    def stop(self):
        stop_process(self.proc)

    def log_tail(self, n=40):
        try:
            self._log.flush()
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = text.strip().splitlines()[-n:]
        return ("\n  [ferry log, last %d lines]\n  " % len(lines) + "\n  ".join(lines)) if lines else ""


# ---------------------------------------------------------------------------------------------
# The scenario entry point


def _on_sigterm(signum, frame):
    raise SystemExit("terminated by signal %d (scenario time limit?)" % signum)


def run_scenario(body):
    """Runs body(workdir) and exits 0 on success, 1 with a clear message on failure. The
    processes it started are stopped on every path."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    started = time.monotonic()
    code = 1
    with tempfile.TemporaryDirectory(prefix="ferry-conf-%s-" % name) as workdir:
        try:
            body(workdir)
            code = 0
        except Failure as e:
            log("FAILED: %s" % e)
        except SystemExit as e:
            log("FAILED: %s" % (e.code,))
        except BaseException:  # noqa: BLE001 - any crash of the scenario is a failure
            log("FAILED with an exception:\n" + traceback.format_exc())
        finally:
            if code != 0:
                _show_broker_logs(workdir)
            _cleanup()
    log("%s: %s in %.1fs" % (name, "ok" if code == 0 else "FAILED", time.monotonic() - started))
    sys.exit(code)


def _show_broker_logs(workdir):
    path = os.path.join(workdir, "ferry.log")
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return
    if lines:
        log("  [ferry log, last %d lines]" % min(len(lines), 40))
        for line in lines[-40:]:
            log("  " + line)
