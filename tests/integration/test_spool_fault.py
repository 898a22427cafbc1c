"""test_spool_fault.py -- a sqlite write fault (SPEC §5, §6, §7).

The daemon runs with tests/libfaultfs.so preloaded (LD_PRELOAD): while the
flag file ERRRELAY_FAULT_FILE exists, every write, pwrite, writev and
fsync to a path containing "spool.db" (the spool and its -wal and -shm)
fails with ENOSPC, as on a full disk.  Events carry their own event_id, so
the test knows the id of an event that is never acked.

1. Fault and recovery.  The http upstream holds every request open until
   the test releases it (then answers 200): the rows stay in the spool
   while the route stays "ok", so status health is "ok" before the fault
   and any "degraded" comes from the fault alone (a 503 upstream would put
   the route in backoff and make health "degraded" from the start).
   N events are acked (committed); status is healthy (exit 0).  The fault
   goes on; M events are sent on an ack connection.  While it lasts:
   status shows spool.write_error true, health "degraded", exit 1,
   counters.commit_errors growing past 1 (the commit is retried), no ack
   at all, and the spool still holds exactly the N committed event_ids
   (route pending and a read-only look at the live database).  The fault
   goes off: the M events are acked ok with their own event_ids within
   seconds, write_error is false, health "ok", exit 0.  The upstream is
   released: all N + M acked events are delivered, spool.rows is 0, and
   after SIGTERM (exit 0) PRAGMA integrity_check is ok and the events
   table is empty.
2. kill -9 while degraded.  A 503 upstream keeps N2 acked events in the
   spool; the fault goes on, M2 more events are sent (none acked), the
   daemon is killed with SIGKILL while status shows write_error.  On disk
   (a copy): integrity_check ok and the events table holds exactly the N2
   acked event_ids (the failed transactions left nothing).  Restarted
   without the shim and with the upstream answering 200, it delivers all
   N2 acked events and drains the spool.
3. SIGTERM while degraded (phase 3): the daemon exits 0 after
   shutdown_timeout, and every event it had read but could not commit is
   answered shutting_down (in order), so the sender knows to resend.

Skipped (77) when ERRRELAY_FAULTFS (set by make check) is unset or names
no file.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid

from harness import (Client, Daemon, binaries, check, counter, fail, log,
                     run, subdir, tmpdir, wait_until)
from stub_upstream import Stub

N = 40
M = 25
N2 = 30
M2 = 15
M3 = 10
MATCH = "spool.db"


class FaultDaemon(Daemon):
    """A Daemon started with the faultfs shim preloaded.

    Daemon.__init__ registers it, so the harness kills it at exit.  start()
    is Daemon.start with an environment: LD_PRELOAD, the two variables of
    the shim, and ASAN_OPTIONS allowing a library ahead of the sanitizer
    runtime (the sanitizer build).  plain_start() is Daemon.start.
    """

    def __init__(self, sections, dir, shim, flag):
        self.shim = shim
        self.flag = flag
        super().__init__(sections, dir=dir)

    def env(self):
        env = dict(os.environ)
        pre = env.get("LD_PRELOAD")
        env["LD_PRELOAD"] = self.shim + (" " + pre if pre else "")
        env["ERRRELAY_FAULT_FILE"] = self.flag
        env["ERRRELAY_FAULT_MATCH"] = MATCH
        asan = env.get("ASAN_OPTIONS")
        env["ASAN_OPTIONS"] = ((asan + ":") if asan else "") + \
            "verify_asan_link_order=0"
        return env

    def start(self, ready_timeout=15):
        if self.proc is not None and self.proc.poll() is None:
            fail("daemon already running")
        d, _ = binaries()
        logf = open(self.logpath, "ab")
        logf.write(("==== start (LD_PRELOAD=%s) %s -c %s\n"
                    % (self.shim, d, self.confpath)).encode())
        logf.flush()
        self.proc = subprocess.Popen([d, "-c", self.confpath],
                                     stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf,
                                     cwd=self.dir, env=self.env())
        logf.close()
        log("started %s pid %d with the fault shim (config %s)"
            % (self.name, self.proc.pid, self.confpath))
        self.wait_ready(ready_timeout)
        return self

    def plain_start(self):
        return Daemon.start(self)


def fault(flag, on):
    if on:
        with open(flag, "w"):
            pass
        log("fault ON (%s created)" % flag)
    else:
        os.unlink(flag)
        log("fault OFF (%s removed)" % flag)


def new_ids(n):
    return [uuid.uuid4().hex for _ in range(n)]


def send_events(c, ids, label, first_id=0):
    for i, eid in enumerate(ids):
        c.send({"op": "event", "id": first_id + i,
                "event": {"event_id": eid,
                          "message": "%s event %d" % (label, i)}})


def check_acks(c, ids, first_id, timeout, what):
    """The next len(ids) replies are ok, in order, with our event_ids."""
    for i, r in enumerate(c.replies(len(ids), timeout=timeout)):
        if r.get("id") != first_id + i or r.get("ok") is not True or \
                r.get("event_id") != ids[i]:
            fail("%s: reply %d should be ok with event_id %s: %r"
                 % (what, first_id + i, ids[i], r))
    check(True, "%s: %d acks ok, in order, with the events' own event_ids"
          % (what, len(ids)))


def db_event_ids(path):
    """The event_ids in the events table, opened read-only."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return sorted(r[0] for r in db.execute("SELECT event_id FROM events"))
    finally:
        db.close()


def integrity(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()


def wait_degraded(dm, min_errors, what):
    def degraded():
        rc, st = dm.status(with_rc=True)
        sp = st.get("spool", {})
        errs = counter(st, "commit_errors")
        if sp.get("write_error") is True and isinstance(errs, int) and \
                errs >= min_errors:
            return rc, st
        return None
    return wait_until(degraded, 20, what)


def log_count(dm, text):
    return dm.log_text().count(text)


def start_committed(shim, stub, name, n, extra=None):
    """A FaultDaemon (fault off) in subdir name relaying to stub over
    http, with n events acked on a connection.  Returns (daemon, flag,
    client, event_ids)."""
    flag = os.path.join(tmpdir(), name + ".on")
    up = {"type": "http", "url": "http://127.0.0.1:%d/ingest" % stub.port}
    up.update(extra or {})
    dm = FaultDaemon({"upstream": up}, dir=subdir(name), shim=shim,
                     flag=flag)
    dm.start()
    c = Client(dm.socket, name="committed")
    c.hello(ack=True)
    ids = new_ids(n)
    send_events(c, ids, "committed")
    check_acks(c, ids, 0, 20, "before the fault")
    return dm, flag, c, ids


def phase1(shim):
    log("== phase 1: fault, no ack, recovery")
    gate = threading.Event()

    def hold(req, index):
        gate.wait(100)
        return 200
    stub = Stub()
    stub.set_handler(hold)
    dm, flag, c1, ids_n = start_committed(shim, stub, "phase1", N,
                                          {"timeout": "110s"})
    wait_until(lambda: stub.count() >= 1, 15,
               "the daemon to send a first request (held open)")
    rc, st = dm.status(with_rc=True)
    log("before the fault: health %s, spool %s, commit_errors %s"
        % (st.get("health"), st.get("spool"), counter(st, "commit_errors")))
    check(st.get("spool", {}).get("rows") == N,
          "spool.rows == %d acked events" % N, st.get("spool"))
    check(st.get("spool", {}).get("write_error") is False,
          "spool.write_error false before the fault", st.get("spool"))
    check(st.get("health") == "ok" and rc == 0,
          "health \"ok\", status exit 0 before the fault",
          (st.get("health"), rc))
    check(counter(st, "commit_errors") == 0, "commit_errors == 0",
          counter(st, "commit_errors"))

    fault(flag, True)
    c2 = Client(dm.socket, name="during")
    c2.hello(ack=True)
    ids_m = new_ids(M)
    send_events(c2, ids_m, "during")
    rc, st = wait_degraded(dm, 2, "spool.write_error true and "
                           "commit_errors >= 2 (a retried commit failed)")
    log("during the fault: health %s, spool %s, counters %s"
        % (st.get("health"), st.get("spool"), st.get("counters")))
    check(True, "status shows spool.write_error true",
          st["spool"]["write_error"])
    check(counter(st, "commit_errors") >= 2,
          "counters.commit_errors >= 2: the commit is retried",
          counter(st, "commit_errors"))
    check(st.get("health") == "degraded", "health \"degraded\"",
          st.get("health"))
    check(rc == 1, "errrelayctl status exits 1 (degraded)", rc)
    routes = st.get("routes") or [{}]
    check(routes[0].get("state") == "ok",
          "the route itself is \"ok\": the degradation is the spool's",
          routes[0].get("state"))
    check(c2.pending_replies() == 0,
          "no reply at all to the %d events sent during the fault" % M,
          c2.pending_replies())
    check(st["spool"].get("rows") == N,
          "spool.rows still %d (the committed rows)" % N, st["spool"])
    check(routes[0].get("pending") == N,
          "route pending (a query of the spool) == %d" % N,
          routes[0].get("pending"))
    got = db_event_ids(dm.spool)
    check(got == sorted(ids_n), "the live spool holds exactly the %d "
          "committed event_ids, none of the %d unacked" % (N, M),
          (len(got), len(set(got) & set(ids_m))))
    fails = log_count(dm, "spool commit failed")
    check(fails >= 1, "the daemon logged the failed commit",
          fails)
    log("log: %d line(s) \"spool commit failed\" for %s failed commits"
        % (fails, counter(st, "commit_errors")))

    fault(flag, False)
    check_acks(c2, ids_m, 0, 10, "after the fault")
    rc, st = dm.status(with_rc=True)
    errs = counter(st, "commit_errors")
    log("after the fault: health %s, spool %s, commit_errors %s"
        % (st.get("health"), st.get("spool"), errs))
    check(st.get("spool", {}).get("write_error") is False,
          "spool.write_error false again", st.get("spool"))
    check(st.get("health") == "ok" and rc == 0,
          "health \"ok\", status exit 0 again", (st.get("health"), rc))
    check(st.get("spool", {}).get("rows") == N + M,
          "spool.rows == %d + %d" % (N, M), st.get("spool"))
    check(log_count(dm, "spool commits work again") >= 1,
          "the daemon logged the recovery",
          log_count(dm, "spool commits work again"))
    log("log: %d line(s) \"spool commit failed\" in all, %s failed commits"
        % (log_count(dm, "spool commit failed"), errs))

    gate.set()
    want = set(ids_n) | set(ids_m)

    def all_delivered():
        got = [e.get("event_id") for e in stub.http_events()]
        return got if want <= set(got) else None
    got = wait_until(all_delivered, 30, "all %d acked events delivered"
                     % (N + M))
    extra = [e for e in got if e not in want]
    check(not extra, "no event delivered that was not sent", extra[:5])
    log("delivered %d events (%d duplicates)" % (len(got),
                                                 len(got) - len(set(got))))
    check(True, "all %d + %d acked event_ids delivered" % (N, M))
    st = wait_until(lambda: (lambda s: s if s.get("spool", {}).get("rows")
                             == 0 else None)(dm.status()),
                    15, "spool.rows == 0 after delivery")
    check(counter(st, "delivered") >= N + M,
          "counters.delivered >= %d" % (N + M), counter(st, "delivered"))
    check(counter(st, "commit_errors") == errs,
          "no commit failed after the fault cleared",
          (counter(st, "commit_errors"), errs))
    c1.close()
    c2.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)
    check(integrity(dm.spool) == [("ok",)],
          "PRAGMA integrity_check of the spool is ok", integrity(dm.spool))
    check(db_event_ids(dm.spool) == [], "the events table is empty",
          len(db_event_ids(dm.spool)))


def phase2(shim):
    log("== phase 2: kill -9 while degraded, restart")
    stub = Stub(503)
    dm, flag, c1, ids_n = start_committed(shim, stub, "phase2", N2)
    wait_until(lambda: stub.count(503) >= 1, 15,
               "the daemon to try the upstream (and get 503)")

    fault(flag, True)
    c2 = Client(dm.socket, name="lost")
    c2.hello(ack=True)
    ids_m = new_ids(M2)
    send_events(c2, ids_m, "unacked")
    rc, st = wait_degraded(dm, 1, "spool.write_error true")
    check(rc == 1 and st.get("health") == "degraded",
          "status: degraded, exit 1", (st.get("health"), rc))
    check(c2.pending_replies() == 0, "no ack during the fault",
          c2.pending_replies())
    check(st["spool"].get("rows") == N2, "spool.rows == %d" % N2,
          st["spool"])

    dm.kill9()
    check(not dm.running() and dm.proc.returncode == -signal.SIGKILL,
          "daemon killed with SIGKILL while degraded", dm.proc.returncode)
    c1.close()
    c2.close()
    fault(flag, False)

    copy = subdir("phase2-copy")
    for suffix in ("", "-wal"):
        if os.path.exists(dm.spool + suffix):
            shutil.copy(dm.spool + suffix,
                        os.path.join(copy, "spool.db" + suffix))
    cp = os.path.join(copy, "spool.db")
    check(integrity(cp) == [("ok",)],
          "PRAGMA integrity_check after kill -9 is ok", integrity(cp))
    got = db_event_ids(cp)
    check(got == sorted(ids_n), "on disk: exactly the %d acked event_ids, "
          "none of the %d never acked" % (N2, M2),
          (len(got), len(set(got) & set(ids_m))))

    stub.set_status(200)
    dm.plain_start()
    want = set(ids_n)

    def all_delivered():
        got = [e.get("event_id") for e in stub.http_events()]
        return got if want <= set(got) else None
    got = wait_until(all_delivered, 30,
                     "all %d acked events delivered after the restart" % N2)
    extra = [e for e in got if e not in want]
    check(not extra, "only acked events delivered", extra[:5])
    check(True, "all %d acked event_ids delivered after kill -9 and "
          "restart (%d duplicates)" % (N2, len(got) - len(set(got))))
    st = wait_until(lambda: (lambda s: s if s.get("spool", {}).get("rows")
                             == 0 else None)(dm.status()),
                    15, "spool.rows == 0 after delivery")
    check(st["spool"].get("write_error") is False,
          "write_error false after the restart", st["spool"])
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def phase3(shim):
    log("== phase 3: SIGTERM while degraded")
    d = subdir("phase3")
    flag = os.path.join(tmpdir(), "fault3.on")
    dm = FaultDaemon({"daemon": {"shutdown_timeout": "1s"}}, dir=d,
                     shim=shim, flag=flag)
    dm.start()
    fault(flag, True)
    c = Client(dm.socket, name="held")
    c.hello(ack=True)
    ids = new_ids(M3)
    send_events(c, ids, "held")
    wait_degraded(dm, 1, "spool.write_error true")
    dm.proc.send_signal(signal.SIGTERM)
    try:
        rc = dm.proc.wait(15)
    except subprocess.TimeoutExpired:
        fail("the daemon did not exit within 15 s of SIGTERM")
    check(rc == 0, "SIGTERM during a fault: exit 0", rc)
    # Every event the daemon read was never committed: its sender is told
    # shutting_down (so it resends to the next daemon), not left waiting.
    # SIGTERM reads what clients had written, so all M3 are answered.
    check(c.wait_eof(5), "the daemon closed the connection")
    got = []
    while c.pending_replies() > 0:
        got.append(c.next_reply(1))
    check(len(got) == M3 and
          all(r.get("ok") is False and r.get("error") == "shutting_down"
              for r in got),
          "all %d events, never committed, are answered shutting_down" % M3,
          (len(got), got[:2]))
    check([r.get("id") for r in got] == list(range(M3)),
          "in order", [r.get("id") for r in got])
    check("could not be committed" in dm.log_text(),
          "the log says how many events could not be committed")
    c.close()
    fault(flag, False)


def main():
    shim = os.environ["ERRRELAY_FAULTFS"]
    phase1(shim)
    phase2(shim)
    phase3(shim)


if __name__ == "__main__":
    p = os.environ.get("ERRRELAY_FAULTFS")
    if not p or not os.path.isfile(p):
        log("SKIP: ERRRELAY_FAULTFS unset or missing: %r" % p)
        sys.exit(77)
    run(main, deadline=90)
