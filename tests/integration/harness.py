"""harness.py -- shared machinery of the errrelay integration tests.

Each test is a plain Python 3 script run by automake's harness as
``python3 tests/integration/test_X.py`` with ERRRELAYD and ERRRELAYCTL set to
the absolute paths of the built binaries.  Exit status: 0 pass, 1 fail,
77 skip (only when the binaries are missing).

What lives here:

- ``run(main, deadline)``: runs a test body under a global deadline
  (signal.alarm), turns any failure into exit 1 with the daemon logs
  printed, always kills the daemons and removes the temp dir.
- ``Daemon``: writes a config from a dict of sections, starts errrelayd in
  the foreground with stderr to a log file, waits until the data socket
  accepts a connection, stops it with SIGTERM (SIGKILL by pid on timeout),
  kill -9, and runs errrelayctl against its control socket.
- ``Client``: one data-socket connection with a reader thread, so replies
  are read line by line with a deadline and the client never blocks the
  daemon by leaving replies unread.
- ``wait_until``: poll a condition until it holds or a deadline passes.
  Every wait in the tests is one of these: no sleep-and-hope.
- ``check``: print what is checked and what was seen; fail if false.
- The DSN key rule (SPEC §5): every DSN written into a config registers
  its key as a secret; errrelayctl output (Daemon.ctl) and, when the test
  body ends, every daemon log are searched for it, and any hit fails the
  test.  So each test that uses a DSN checks the rule for free.
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HEX32 = "0123456789abcdef"


class Failure(Exception):
    """A check that did not hold."""


# ------------------------------------------------------------ bookkeeping

_daemons = []
_stubs = []
_tmpdir = None
_secrets = set()


def log(msg):
    print(msg, flush=True)


def fail(msg):
    raise Failure(msg)


def check(cond, what, saw=None):
    """Assert cond; print 'ok: what' or raise Failure naming what was seen."""
    if cond:
        if saw is None:
            log("ok: %s" % what)
        else:
            log("ok: %s (saw %s)" % (what, _short(saw)))
        return
    raise Failure("%s -- saw %s" % (what, _short(saw)))


def _short(v, limit=600):
    s = v if isinstance(v, str) else repr(v)
    if len(s) > limit:
        s = s[:limit] + "...(%d chars)" % len(s)
    return s


def is_event_id(s):
    return (isinstance(s, str) and len(s) == 32 and
            all(c in HEX32 for c in s))


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def tmpdir():
    """The test's temp dir (created once, removed at exit)."""
    global _tmpdir
    if _tmpdir is None:
        _tmpdir = tempfile.mkdtemp(prefix="errrelay-it-")
    return _tmpdir


def subdir(name):
    """A fresh directory name inside the test's temp dir."""
    p = os.path.join(tmpdir(), name)
    os.makedirs(p)
    return p


def register_stub(stub):
    _stubs.append(stub)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def dsn_secrets(dsn):
    """The key (and a legacy secret key) of a DSN URL, or []."""
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^@/]+)@", str(dsn))
    if m is None:
        return []
    return [k for k in m.group(1).split(":") if k]


def register_secret(secret):
    """A string that must never appear in a log line or ctl output."""
    if secret:
        _secrets.add(secret)


def secrets_in(text):
    """The registered secrets that occur in text."""
    return sorted(k for k in _secrets if k in text)


def check_no_secrets():
    """Fail if a registered secret is in any daemon log."""
    if not _secrets:
        return
    for d in _daemons:
        hit = secrets_in(d.log_text())
        if hit:
            fail("a DSN key appears in the daemon log %s: %r"
                 % (d.logpath, hit))
    log("ok: no DSN key in the log of %d daemon(s) (%d key(s) checked)"
        % (len(_daemons), len(_secrets)))


def binaries():
    """(errrelayd, errrelayctl) paths; exit 77 if either is missing."""
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(os.path.dirname(here))
    d = os.environ.get("ERRRELAYD") or os.path.join(top, "errrelayd")
    c = os.environ.get("ERRRELAYCTL") or os.path.join(top, "errrelayctl")
    for p in (d, c):
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            log("SKIP: binary missing: %s" % p)
            sys.exit(77)
    return d, c


def wait_until(cond, timeout, what, interval=0.05):
    """Poll cond() until it returns a true value, which is returned.

    Fails with a message naming what was awaited if timeout seconds pass.
    A Failure or AssertionError from cond() (a strict check that did not
    hold) fails at once; any other exception counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (Failure, AssertionError):
            raise
        except Exception as e:  # not ready yet
            last_exc = e
        if time.monotonic() >= deadline:
            extra = "" if last_exc is None else " (last error: %r)" % last_exc
            raise Failure("timed out after %.1fs waiting for %s%s"
                          % (timeout, what, extra))
        time.sleep(interval)


def _cleanup():
    for d in list(_daemons):
        d.kill9(quiet=True)
    for s in list(_stubs):
        try:
            s.close()
        except Exception:
            pass
    if _tmpdir is not None and not os.environ.get("ERRRELAY_KEEP_TMP"):
        shutil.rmtree(_tmpdir, ignore_errors=True)


atexit.register(_cleanup)


def _dump_logs():
    for d in _daemons:
        log("---- daemon log %s (last 80 lines) ----" % d.logpath)
        for line in d.log_text().splitlines()[-80:]:
            log("| " + line)
    for s in _stubs:
        try:
            log("---- stub: %s" % s.summary())
        except Exception:
            pass


def _on_alarm(signum, frame):
    for d in list(_daemons):
        d.kill9(quiet=True)
    raise Failure("global test deadline exceeded")


def run(main, deadline=60):
    """Run main() under a global deadline; exit 0 on success, 1 on failure."""
    binaries()
    name = os.path.basename(sys.argv[0])
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(deadline)
    t0 = time.monotonic()
    rc = 0
    try:
        main()
        check_no_secrets()
        log("PASS: %s (%.1fs)" % (name, time.monotonic() - t0))
    except (Failure, AssertionError) as e:
        signal.alarm(0)
        log("FAIL: %s: %s" % (name, e))
        _dump_logs()
        rc = 1
    except BaseException:
        signal.alarm(0)
        log("FAIL: %s: unexpected exception" % name)
        traceback.print_exc(file=sys.stdout)
        _dump_logs()
        rc = 1
    signal.alarm(0)
    sys.stdout.flush()
    _cleanup()
    sys.exit(rc)


# ------------------------------------------------------------- the daemon

class Daemon:
    """One errrelayd under test, with its own config, sockets and spool.

    sections: {"daemon": {...}, "upstream": {...}, "route x": {...}}; the
    [daemon] socket, control_socket, spool and sync keys default to paths in
    dir.  Values are written as given (str()).
    """

    def __init__(self, sections=None, dir=None, name="errrelayd", uid=None):
        self.uid = uid      # run as this uid (and gid), when root
        self.dir = dir or tmpdir()
        self.name = name
        self.socket = os.path.join(self.dir, "data.sock")
        self.control = os.path.join(self.dir, "ctl.sock")
        self.spool = os.path.join(self.dir, "spool.db")
        self.confpath = os.path.join(self.dir, name + ".conf")
        self.logpath = os.path.join(self.dir, name + ".log")
        self.proc = None
        self.sections = {}
        self.configure(sections or {})
        _daemons.append(self)

    def configure(self, sections):
        """(Re)write the config file from sections."""
        base = {"socket": self.socket, "control_socket": self.control,
                "spool": self.spool, "sync": "normal"}
        merged = {"daemon": dict(base)}
        for sec, kv in sections.items():
            merged.setdefault(sec, {})
            merged[sec].update(kv)
        d = merged["daemon"]
        self.socket, self.control, self.spool = (
            d["socket"], d["control_socket"], d["spool"])
        self.sections = merged
        lines = []
        for sec, kv in merged.items():
            lines.append("[%s]" % sec)
            for k, v in kv.items():
                lines.append("%s = %s" % (k, v))
                if k == "dsn":
                    for key in dsn_secrets(v):
                        register_secret(key)
            lines.append("")
        with open(self.confpath, "w") as f:
            f.write("\n".join(lines))

    def start(self, ready_timeout=15):
        """Start the daemon and wait until its data socket accepts."""
        if self.proc is not None and self.proc.poll() is None:
            fail("daemon already running")
        d, _ = binaries()
        logf = open(self.logpath, "ab")
        logf.write(("==== start %s -c %s\n" % (d, self.confpath)).encode())
        logf.flush()
        who = {}
        if self.uid is not None:
            who = {"user": self.uid, "group": self.uid, "extra_groups": []}
        self.proc = subprocess.Popen([d, "-c", self.confpath],
                                     stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf,
                                     cwd=self.dir, **who)
        logf.close()
        log("started %s pid %d (config %s)" % (self.name, self.proc.pid,
                                               self.confpath))
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout=15):
        def ready():
            if self.proc.poll() is not None:
                fail("daemon exited with status %s before it was ready"
                     % self.proc.returncode)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(1)
                s.connect(self.socket)
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_until(ready, timeout, "the data socket %s to accept"
                   % self.socket)
        log("daemon ready: data socket accepts")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM, wait up to timeout, else SIGKILL.  Returns the status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                fail("daemon did not exit within %ds of SIGTERM (killed)"
                     % timeout)
        rc = self.proc.returncode
        log("daemon pid %d exited with status %d" % (self.proc.pid, rc))
        return rc

    def kill9(self, quiet=False):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except Exception:
            pass
        if not quiet:
            log("daemon pid %d killed with SIGKILL" % self.proc.pid)

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def ctl(self, *args, timeout=10):
        """Run errrelayctl -s CONTROL args...; returns (rc, stdout, stderr)."""
        _, c = binaries()
        try:
            p = subprocess.run([c, "-s", self.control] + list(args),
                               stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("errrelayctl %s did not finish in %ds" % (" ".join(args),
                                                           timeout))
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        hit = secrets_in(out + err)
        if hit:
            fail("errrelayctl %s printed a DSN key %r" % (" ".join(args),
                                                         hit))
        return (p.returncode, out, err)

    def wait_drained(self, timeout=15):
        """Wait until routes[0] is "ok" and spool.rows is 0; returns
        (rc, status)."""
        def drained():
            rc, st = self.status(with_rc=True)
            routes = st.get("routes") or []
            if routes and routes[0].get("state") == "ok" and \
                    st.get("spool", {}).get("rows") == 0:
                return rc, st
            return None
        return wait_until(drained, timeout, "routes[0].state back to "
                          "\"ok\" and spool.rows == 0")

    def status(self, with_rc=False):
        """status --json, parsed.  Fails unless rc is 0 or 1."""
        rc, out, err = self.ctl("status", "--json")
        if rc not in (0, 1):
            fail("errrelayctl status --json exited %d: %s %s"
                 % (rc, out.strip(), err.strip()))
        try:
            st = json.loads(out)
        except ValueError:
            fail("errrelayctl status --json printed no JSON object: %r"
                 % out[:500])
        if not isinstance(st, dict):
            fail("status --json is not an object: %r" % out[:500])
        return (rc, st) if with_rc else st


def counter(st, *path):
    """st["counters"][path...] or None."""
    v = st.get("counters", {})
    for p in path:
        if not isinstance(v, dict):
            return None
        v = v.get(p)
    return v


# ------------------------------------------------------------- the client

class Client:
    """One connection to the data socket.

    A reader thread collects reply lines; next_reply() returns them one at
    a time with a deadline.  lines_sent counts newline-terminated lines, so
    next_line() is the 1-based number the next line will get.
    """

    def __init__(self, path, name="client"):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.lines_sent = 0
        self._buf = b""
        self._replies = []
        self._eof = False
        self._err = None
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self):
        s = self.sock.dup()
        s.settimeout(None)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                with self._cv:
                    self._buf += data
                    while b"\n" in self._buf:
                        line, self._buf = self._buf.split(b"\n", 1)
                        self._replies.append(line)
                    self._cv.notify_all()
        except OSError as e:
            self._err = e
        finally:
            s.close()
            with self._cv:
                self._eof = True
                self._cv.notify_all()

    def next_line(self):
        return self.lines_sent + 1

    def send_raw(self, data):
        self.sock.sendall(data)
        self.lines_sent += data.count(b"\n")

    def send(self, obj):
        """Send one JSON line; returns its line number."""
        n = self.next_line()
        self.send_raw(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        return n

    def hello(self, ack=True, app=None, id=None, **kw):
        m = {"op": "hello", "ack": ack}
        if app is not None:
            m["app"] = app
        if id is not None:
            m["id"] = id
        m.update(kw)
        return self.send(m)

    def next_reply(self, timeout=10):
        """The next reply line parsed as JSON; fails on timeout or EOF."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._replies:
                if self._eof:
                    fail("%s: connection closed while waiting for a reply%s"
                         % (self.name, "" if self._err is None
                            else " (%s)" % self._err))
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("%s: no reply within %.1fs" % (self.name, timeout))
                self._cv.wait(left)
            line = self._replies.pop(0)
        try:
            r = json.loads(line.decode("utf-8"))
        except ValueError:
            fail("%s: reply is not JSON: %r" % (self.name, line[:300]))
        if not isinstance(r, dict):
            fail("%s: reply is not an object: %r" % (self.name, line[:300]))
        return r

    def replies(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        return [self.next_reply(max(0.1, deadline - time.monotonic()))
                for _ in range(n)]

    def send_events(self, n, label, timeout=20):
        """Send n events with ids 0..n-1 ("LABEL event I") on an ack
        connection; fail unless each is answered ok, in order, with an
        event_id.  Returns the acked event_ids."""
        for i in range(n):
            self.send({"op": "event", "id": i,
                       "event": {"message": "%s event %d" % (label, i)}})
        acked = []
        for i, r in enumerate(self.replies(n, timeout=timeout)):
            if r.get("id") != i or r.get("ok") is not True or \
                    not is_event_id(r.get("event_id")):
                fail("reply for event %d should be ok with event_id: %r"
                     % (i, r))
            acked.append(r["event_id"])
        return acked

    def pending_replies(self):
        with self._cv:
            return len(self._replies)

    def wait_eof(self, timeout=10):
        """Wait until the daemon closed the connection; True if it did."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._t.join(5)


def ack_event(client, event, id, fiber=None, timeout=10, **kw):
    """Send an event with id and return its event_id after checking the ack."""
    m = {"op": "event", "id": id, "event": event}
    if fiber is not None:
        m["fiber"] = fiber
    m.update(kw)
    client.send(m)
    r = client.next_reply(timeout)
    if r.get("id") != id or r.get("ok") is not True:
        fail("event %r not acked ok: %r" % (id, r))
    if not is_event_id(r.get("event_id")):
        fail("ack of %r has no valid event_id: %r" % (id, r))
    return r["event_id"]


def read_ndjson(path):
    """Parsed objects of a complete-lines NDJSON file ([] if absent)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    # the piece after the last newline is a line still being written
    complete = lines[:-1]
    out = []
    for line in complete:
        if not line.strip():
            continue
        try:
            out.append(json.loads(line.decode("utf-8")))
        except ValueError:
            fail("NDJSON file %s has a line that is not JSON: %r"
                 % (path, line[:300]))
    return out
