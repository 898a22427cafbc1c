"""test_crash.py -- acceptance (c): an acked event survives kill -9.

sync = full.  The upstream answers 503, so every event stays spooled.
300 acked events are sent on several connections; the daemon is killed
with SIGKILL; the spool file passes PRAGMA integrity_check; the daemon is
restarted with the upstream now answering 200, and every acked event_id
must be delivered (duplicates are allowed by at-least-once, and counted).
"""

import os
import shutil
import sqlite3

from harness import (Client, Daemon, check, fail, is_event_id, log, run,
                     subdir, wait_until)
from stub_upstream import Stub

N = 300
NCONN = 4


def main():
    stub = Stub(503)
    dm = Daemon({"daemon": {"sync": "full"},
                 "upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}})
    dm.start()

    clients = [Client(dm.socket, name="conn%d" % k) for k in range(NCONN)]
    for c in clients:
        c.hello(ack=True)
    sent = {k: [] for k in range(NCONN)}
    for i in range(N):
        k = i % NCONN
        clients[k].send({"op": "event", "id": i, "fiber": "f%d" % (i % 7),
                         "event": {"message": "crash event %d" % i}})
        sent[k].append(i)
    acked = {}
    for k, c in enumerate(clients):
        for want, r in zip(sent[k], c.replies(len(sent[k]), timeout=30)):
            if r.get("id") != want or r.get("ok") is not True or \
                    not is_event_id(r.get("event_id")):
                fail("conn%d: reply for event %d should be ok with an "
                     "event_id: %r" % (k, want, r))
            acked[r["event_id"]] = want
    check(len(acked) == N, "%d events acked on %d connections, distinct "
          "event_ids" % (N, NCONN), len(acked))

    wait_until(lambda: stub.count(503) >= 1, 15,
               "the daemon to try the upstream (and get 503)")
    st = dm.status()
    check(st.get("spool", {}).get("rows") == N,
          "with the upstream failing, all %d events are in the spool" % N,
          st.get("spool"))
    check(not stub.http_events(), "nothing delivered before the crash",
          len(stub.http_events()))

    dm.kill9()
    check(not dm.running(), "daemon killed with SIGKILL",
          dm.proc.returncode)
    for c in clients:
        c.close()

    # integrity of what the killed daemon left on disk, checked on a copy
    # so the daemon's own recovery of the WAL is what the restart tests
    copy = subdir("spool-copy")
    for suffix in ("", "-wal"):
        if os.path.exists(dm.spool + suffix):
            shutil.copy(dm.spool + suffix,
                        os.path.join(copy, "spool.db" + suffix))
    db = sqlite3.connect(os.path.join(copy, "spool.db"))
    try:
        res = db.execute("PRAGMA integrity_check").fetchall()
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        db.close()
    check(res == [("ok",)], "PRAGMA integrity_check of the spool after "
          "kill -9 is ok", res)
    log("spool tables: %s" % tables)

    stub.set_status(200)
    before = len(stub.requests())
    dm.start()

    def all_delivered():
        got = [e.get("event_id") for e in stub.http_events()]
        return got if set(acked) <= set(got) else None
    got = wait_until(all_delivered, 30,
                     "every acked event delivered after the restart")
    dups = sum(got.count(eid) - 1 for eid in acked)
    extra = [eid for eid in got if eid not in acked]
    log("after restart: %d requests, %d events delivered, %d duplicates"
        % (len(stub.requests()) - before, len(got), dups))
    check(True, "all %d acked event_ids delivered after kill -9 and "
          "restart (%d duplicates)" % (N, dups))
    check(not extra, "no event delivered that was not acked", extra[:5])
    st = wait_until(lambda: (lambda s: s if s.get("spool", {}).get("rows")
                             == 0 else None)(dm.status()),
                    15, "spool.rows == 0 after delivery")
    check(True, "spool drained after the restart", st.get("spool"))
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=90)
