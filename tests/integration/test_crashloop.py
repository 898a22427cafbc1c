"""test_crashloop.py -- the crash loop (SPEC §5: "An event is acknowledged
(ok:true) only after the sqlite transaction that holds it has committed",
"sync = full ... sync = normal: survives kill -9 of the daemon",
"At-least-once delivery ... Restarting the daemon resumes where it
stopped").

Issue acceptance: under acked load, kill -9 at random points, at least 20
rounds; after each restart PRAGMA integrity_check is ok and every acked
event reaches the upstream (duplicates allowed, bounded, counted).

One http stub upstream (batch_size 20, max_inflight 4, answering 200)
lives across all rounds and records what it received; the daemon keeps
the same spool.db.  Each of ROUNDS rounds starts the daemon (sync = full
and sync = normal alternating), runs acked load from 2 or 3 connections
(unique messages, pipelined), and kills the daemon with SIGKILL at a
random point 50..400 ms after the load started, so kills land during
group commits and during deliveries.  After every kill, a copy of the
spool (db + -wal) passes PRAGMA integrity_check.  After the last round
the daemon is started once more without load; then:
- every acked event_id is delivered (2xx) at least once, with the message
  the test sent for it;
- spool.rows in status --json reaches 0;
- no delivered event carries a message the test never sent, and no message
  was delivered under two event_ids;
- duplicate deliveries are counted and stay within the bound the delivery
  design gives (see DUP_BOUND);
- SIGTERM: exit 0.
The kill points come from random.Random(seed); the seed is printed, and
ERRRELAY_SEED=N replays a run.
"""

import os
import random
import re
import shutil
import signal
import sqlite3
import threading
import time

from harness import (Client, Daemon, Failure, check, fail, is_event_id, log,
                     run, subdir, wait_until)
from stub_upstream import Stub, parse_ndjson

ROUNDS = 24
BATCH = 20
INFLIGHT = 4
WINDOW = 16             # events pipelined per connection before reading
PACE = 0.002            # pause between windows: keeps the volume (and the
                        # stub's records of it) to some 100k events
KILL_MIN, KILL_MAX = 0.05, 0.40
MSG = "crashloop r%d c%d e%d"       # round, connection, event: unique
MSG_RE = re.compile(r"^crashloop r(\d+) c(\d+) e(\d+)$")

# Duplicates.  A spooled row is deleted only after its batch got a 2xx,
# and that delete is folded into the next group commit (forward.c,
# commit.c).  So what a kill -9 can make the restarted daemon send again
# is (a) the batches in flight at the kill, which the stub may already
# have answered 2xx: at most max_inflight of them, and (b) the batches
# whose 2xx the daemon had processed but whose delete was not committed
# yet.  A finished batch frees its slot and the next batch goes out at
# once, before the commit runs later in the same loop turn, so (b) is
# also at most max_inflight batches (those that completed in the turn the
# kill interrupted).  Each batch holds at most batch_size events.  Hence
# at most 2 * max_inflight * batch_size re-sent events per kill.
DUP_BOUND = ROUNDS * 2 * INFLIGHT * BATCH


class Delivered:
    """What the stub accepted (2xx), parsed once per request and checked
    event by event against what the test sent.

    update() runs only between rounds (the load threads joined), so every
    ack the test will ever see for an event delivered so far is already in
    acked: an event is delivered after it was sent, and its ack, if any,
    came in that same round."""

    def __init__(self, stub, acked, nsent):
        self.stub = stub
        self.acked = acked      # event_id -> message (the test's record)
        self.nsent = nsent      # (round, connection) -> events sent
        self.seen = set()       # requests parsed
        self.total = 0          # events delivered, duplicates included
        self.times = {}         # event_id -> deliveries
        self.unacked = {}       # event_id -> message, not acked but sent
        self.unknown = []       # (event_id, message) never sent
        self.wrong = []         # (event_id, acked message, delivered one)

    def dups(self):
        return self.total - len(self.times)

    def was_sent(self, msg):
        m = MSG_RE.match(msg) if isinstance(msg, str) else None
        return m is not None and int(m.group(3)) < self.nsent.get(
            (int(m.group(1)), int(m.group(2))), 0)

    def update(self):
        for r in self.stub.requests():
            if id(r) in self.seen or r.status is None:
                continue
            self.seen.add(id(r))
            if not r.ok():
                continue
            for e in parse_ndjson(r.body):
                eid, msg = e.get("event_id"), e.get("message")
                self.total += 1
                self.times[eid] = self.times.get(eid, 0) + 1
                if not self.was_sent(msg):
                    self.unknown.append((eid, msg))
                elif eid in self.acked:
                    if self.acked[eid] != msg:
                        self.wrong.append((eid, self.acked[eid], msg))
                elif self.unacked.setdefault(eid, msg) != msg:
                    self.wrong.append((eid, self.unacked[eid], msg))


class Load:
    """Acked load from one connection, in a thread, until it dies."""

    def __init__(self, path, rnd, k, killed):
        self.path, self.rnd, self.k = path, rnd, k
        self.killed = killed        # set just before the kill -9
        self.acked = {}             # event_id -> message
        self.nsent = 0              # messages e0 .. e(nsent-1) were sent
        self.error = None           # a failure before the kill
        self.connected = threading.Event()
        self.client = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            self.client = Client(self.path, name="r%d-conn%d"
                                 % (self.rnd, self.k))
            self.client.hello(ack=True)
            self.connected.set()
            i = 0
            while True:
                window = []
                for _ in range(WINDOW):
                    msg = MSG % (self.rnd, self.k, i)
                    self.nsent += 1     # counted before: a send may fail
                    self.client.send({"op": "event", "id": i,
                                      "event": {"message": msg}})
                    window.append((i, msg))
                    i += 1
                for want, msg in window:
                    r = self.client.next_reply(timeout=10)
                    if r.get("id") != want or r.get("ok") is not True or \
                            not is_event_id(r.get("event_id")):
                        # a real answer that is wrong: never the kill
                        self.error = ("reply for event %d should be ok with "
                                      "an event_id: %r" % (want, r))
                        return
                    self.acked[r["event_id"]] = msg
                time.sleep(PACE)
        except (Failure, OSError) as e:
            # the connection died with the daemon: the load just stops;
            # before the kill it is an error
            if not self.killed.is_set():
                self.error = "%s: %r" % (type(e).__name__, e)
        finally:
            self.connected.set()

    def join(self):
        self.t.join(15)
        if self.client is not None:
            self.client.close()
        return not self.t.is_alive()


def integrity(dm, rnd):
    """PRAGMA integrity_check on a copy of the spool the killed daemon
    left (db + -wal), so the daemon's own recovery of the WAL is what the
    next start exercises."""
    check(os.path.exists(dm.spool), "round %d: spool.db exists" % rnd)
    copy = subdir("spool-copy-%d" % rnd)
    for suffix in ("", "-wal"):
        if os.path.exists(dm.spool + suffix):
            shutil.copy(dm.spool + suffix,
                        os.path.join(copy, "spool.db" + suffix))
    db = sqlite3.connect(os.path.join(copy, "spool.db"))
    try:
        res = db.execute("PRAGMA integrity_check").fetchall()
        tables = sorted(r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        db.close()
    shutil.rmtree(copy, ignore_errors=True)
    check(res == [("ok",)], "round %d: PRAGMA integrity_check of the spool "
          "after kill -9 is ok" % rnd, res)
    # an empty or foreign file would also say "ok"
    check("events" in tables, "round %d: the spool copy holds the events "
          "table" % rnd, tables)


def main():
    t0 = time.monotonic()
    env_seed = os.environ.get("ERRRELAY_SEED")
    seed = int(env_seed) if env_seed else random.SystemRandom().randrange(
        1 << 32)
    log("seed %d (ERRRELAY_SEED=%d replays the kill points)" % (seed, seed))
    rng = random.Random(seed)

    stub = Stub(200)
    upstream = {"type": "http",
                "url": "http://127.0.0.1:%d/ingest" % stub.port,
                "batch_size": BATCH, "max_inflight": INFLIGHT}
    dm = Daemon({"daemon": {"sync": "full"}, "upstream": upstream})
    nsent = {}                  # (round, connection) -> events sent
    acked = {}                  # event_id -> message, all rounds
    delivered = Delivered(stub, acked, nsent)
    for rnd in range(1, ROUNDS + 1):
        sync = "full" if rnd % 2 else "normal"
        dm.configure({"daemon": {"sync": sync}, "upstream": upstream})
        dm.start()
        nconn = rng.choice((2, 3))
        delay = rng.uniform(KILL_MIN, KILL_MAX)
        reqs_before = len(stub.requests())
        killed = threading.Event()
        loads = [Load(dm.socket, rnd, k, killed)
                 for k in range(nconn)]
        wait_until(lambda: all(ld.connected.is_set() for ld in loads), 10,
                   "round %d: %d load connections open" % (rnd, nconn))
        time.sleep(delay)       # the random kill point, not a wait
        killed.set()
        dm.kill9()
        check(dm.proc.returncode == -signal.SIGKILL, "round %d: daemon "
              "killed by SIGKILL (not exited on its own)" % rnd,
              dm.proc.returncode)
        for ld in loads:
            if not ld.join():
                fail("round %d: a load thread did not stop after the kill"
                     % rnd)
            if ld.error is not None:
                fail("round %d, connection %d failed before the kill: %s"
                     % (rnd, ld.k, ld.error))
        n_acked = 0
        for ld in loads:
            nsent[(rnd, ld.k)] = ld.nsent
            for eid, msg in ld.acked.items():
                if eid in acked and acked[eid] != msg:
                    fail("event_id %s acked for two messages: %r and %r"
                         % (eid, acked[eid], msg))
                acked[eid] = msg
                n_acked += 1
        delivered.update()
        log("round %d: sync=%s, %d connections, kill after %.0f ms: "
            "%d sent, %d acked, %d upstream requests this round, "
            "%d duplicate deliveries so far"
            % (rnd, sync, nconn, delay * 1000,
               sum(ld.nsent for ld in loads), n_acked,
               len(stub.requests()) - reqs_before, delivered.dups()))
        integrity(dm, rnd)

    check(len(acked) >= ROUNDS, "acked load ran: %d events acked over %d "
          "rounds" % (len(acked), ROUNDS), len(acked))

    # the last start: no load, everything must come out
    dm.configure({"daemon": {"sync": "full"}, "upstream": upstream})
    dm.start()

    def all_delivered():
        delivered.update()
        return all(eid in delivered.times for eid in acked)
    wait_until(all_delivered, 40, "every acked event delivered (2xx) after "
               "the last restart", interval=0.1)

    def spool_empty():
        st = dm.status()
        return st if st.get("spool", {}).get("rows") == 0 else None
    st = wait_until(spool_empty, 20, "status spool.rows == 0")
    check(True, "spool drained after the last restart", st.get("spool"))

    delivered.update()
    missing = [eid for eid in acked if eid not in delivered.times]
    check(not missing, "every one of the %d acked event_ids delivered at "
          "least once" % len(acked), missing[:5])
    check(not delivered.wrong, "each delivered event_id carries the message "
          "the test sent (and got acked) for it", delivered.wrong[:5])
    check(not delivered.unknown, "no delivered event the test never sent",
          delivered.unknown[:3])
    # each message was sent once: it must not come under two event_ids
    # (an acked one under a second id shows up in wrong or here)
    acked_msgs = set(acked.values())
    split = [(eid, msg) for eid, msg in delivered.unacked.items()
             if msg in acked_msgs]
    by_msg = {}
    for eid, msg in delivered.unacked.items():
        by_msg.setdefault(msg, []).append(eid)
    split += [(eids, msg) for msg, eids in by_msg.items() if len(eids) > 1]
    check(not split, "no message delivered under two event_ids (each "
          "event spooled once)", split[:3])
    dups = delivered.dups()
    log("figures: %d rounds, %d events sent, %d acked, %d delivered "
        "(%d distinct; %d committed but not acked before a kill), "
        "%d duplicate deliveries, %d upstream requests, %.1f s"
        % (ROUNDS, sum(nsent.values()), len(acked), delivered.total,
           len(delivered.times), len(delivered.unacked), dups,
           len(stub.requests()), time.monotonic() - t0))
    check(dups <= DUP_BOUND, "duplicate deliveries %d within the bound "
          "rounds * 2 * max_inflight * batch_size = %d" % (dups, DUP_BOUND),
          dups)
    check(not stub.decode_errors(), "every request body the stub got "
          "decoded (Content-Encoding)", stub.decode_errors()[:3])

    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=110)
