"""test_lifetimes.py -- scope lifetimes and bounds (SPEC §3, §6, §11).

Each part runs its own errrelayd with short configured values and reads
the counters from ``errrelayctl status --json`` (counters.fibers_evicted
{lru, ttl, grace}, top-level "fibers" and "processes").  The daemon sweeps
expiries once a second, so every wait is a wait_until with a deadline.
All data connections of parts (a)-(c) come from this test process, so
they share one pid and therefore one set of scopes.

(a) scope_grace = 4s: a client that disconnects and reconnects within the
    grace (after at least one sweep has run while it was away) finds its
    process scope and fiber scope intact, and its next event carries both
    layers; once its last connection has been closed for longer than the
    grace, the process is freed with its fiber (fibers_evicted.grace == 1,
    processes == 0, not before the grace), and a new connection's event
    carries none of the old tags, user or crumbs.
(b) max_fibers = 10: 15 fibers are made, fiber f0 touched after f1..f9
    exist; fibers_evicted.lru == 5 and fibers == 10; the live fibers are
    exactly f0 and f6..f14 (the least recently used went first); f0's
    event carries its tags, an evicted fiber's event carries none, and an
    event never makes a fiber.
(c) fiber_ttl = 2s: of two fibers, the one left idle is freed and counted
    under ttl, the one kept busy survives; the freed fiber's next event
    carries none of its tags, the busy one's still does.
(d) errrelayctl fibers --json lists every live scope of every process
    (process scopes with "fiber": null, integer fiber ids as text);
    --pid N lists only that process's scopes, also in text form; a
    fiber's next event carries exactly the tags, user and crumbs listed
    for it and its process; an ended fiber is no longer listed.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time

from harness import (Client, Daemon, check, counter, fail, is_event_id, log,
                     run, subdir, wait_until)
from stub_upstream import Stub


# ------------------------------------------------------------- helpers

def start(name, daemon_keys):
    """A daemon in its own dir with an http stub upstream."""
    stub = Stub(200)
    dm = Daemon({"daemon": daemon_keys,
                 "upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}}, dir=subdir(name))
    dm.start()
    return dm, stub


def connect(dm, name):
    c = Client(dm.socket, name=name)
    c.hello(ack=True)
    return c


def ack(c, msg):
    """Send msg with an id; fail unless its reply is ok."""
    c.send(msg)
    r = c.next_reply()
    if r.get("id") != msg["id"] or r.get("ok") is not True:
        fail("%s: %r should be answered ok, saw %r" % (c.name, msg, r))
    return r


def event(c, stub, id, fiber=None):
    """Send an event with id (and fiber); return it as delivered."""
    m = {"op": "event", "id": id, "event": {"message": "lifetimes " + id}}
    if fiber is not None:
        m["fiber"] = fiber
    r = ack(c, m)
    eid = r.get("event_id")
    if not is_event_id(eid):
        fail("ack of %s has no valid event_id: %r" % (id, r))

    def delivered():
        for e in stub.http_events():
            if e.get("event_id") == eid:
                return e
        return None
    ev = wait_until(delivered, 15, "event %s at the stub" % id)
    log("event %s delivered: tags=%s user=%s crumbs=%s" % (
        id, ev.get("tags"), ev.get("user"), crumb_messages(ev)))
    return ev


def crumb_messages(ev):
    bc = ev.get("breadcrumbs")
    if not isinstance(bc, dict):
        return []
    return [b.get("message") for b in bc.get("values", [])]


def evicted(st, cause):
    return counter(st, "fibers_evicted", cause)


def scopes(dm, *args):
    """errrelayctl fibers --json [args]: the parsed answer."""
    rc, out, err = dm.ctl("fibers", "--json", *args)
    if rc != 0:
        fail("errrelayctl fibers --json %s exited %d: %s %s"
             % (" ".join(args), rc, out.strip(), err.strip()))
    try:
        o = json.loads(out)
    except ValueError:
        fail("errrelayctl fibers --json printed no JSON: %r" % out[:500])
    if not isinstance(o, dict) or not isinstance(o.get("scopes"), list):
        fail("fibers --json should be an object with a scopes list: %r"
             % out[:500])
    return o


def live_fibers(dm, pid):
    """{fiber id: scope} of pid's live fiber scopes."""
    return {s["fiber"]: s.get("scope") for s in scopes(dm)["scopes"]
            if s.get("pid") == pid and s.get("fiber") is not None}


# A client in another process: prints its pid, sends each JSON line of its
# stdin; for a line with an "id" prints the reply.  Exits when stdin closes.
CHILD = r'''
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
s.connect(sys.argv[1])
f = s.makefile("rb")
print(json.dumps({"pid": os.getpid()}), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    s.sendall(json.dumps(msg).encode() + b"\n")
    if "id" in msg:
        print(f.readline().decode().strip() or "{}", flush=True)
s.close()
'''


class Child:
    def __init__(self, path):
        self.p = subprocess.Popen([sys.executable, "-c", CHILD, path],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = self._line()["pid"]

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def _line(self):
        try:
            line = self.q.get(timeout=15)
        except queue.Empty:
            fail("child client: no output within 15s")
        if line is None:
            fail("child client exited (status %s)" % self.p.poll())
        return json.loads(line)

    def ack(self, msg):
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        r = self._line()
        if r.get("id") != msg["id"] or r.get("ok") is not True:
            fail("child client: %r not ok: %r" % (msg, r))

    def finish(self):
        self.p.stdin.close()
        self.p.wait(10)


# --------------------------------------------------------------- parts

GRACE = 4


def grace():
    log("== part a: scope_grace = %ds: reconnect within it keeps the "
        "scopes, after it they are gone" % GRACE)
    dm, stub = start("grace", {"scope_grace": "%ds" % GRACE})
    c1 = connect(dm, "c1")
    ack(c1, {"op": "set", "id": "p", "tags": {"proc_tag": "P"}})
    ack(c1, {"op": "set", "fiber": "req-1", "id": "f",
             "tags": {"fiber_tag": "F"}, "user": {"id": "u1"}})
    ack(c1, {"op": "crumb", "fiber": "req-1", "id": "cr",
             "crumb": {"message": "before the disconnect"}})
    st = dm.status()
    check(st.get("processes") == 1 and st.get("fibers") == 1,
          "connected: 1 process, 1 fiber scope",
          (st.get("processes"), st.get("fibers")))
    c1.close()
    t_close = time.monotonic()
    def detached():
        st = dm.status()
        return st if st.get("connections") == 0 else None
    st = wait_until(detached, 10, "status connections == 0")
    check(st.get("processes") == 1 and st.get("fibers") == 1,
          "disconnected: the process and its fiber are still tracked",
          (st.get("processes"), st.get("fibers")))
    # Let at least one sweep (once a second) run while we are away.
    wait_until(lambda: time.monotonic() - t_close >= 1.5, 5,
               "1.5s since the disconnect")
    st = dm.status()
    check(st.get("processes") == 1 and st.get("fibers") == 1 and
          evicted(st, "grace") == 0,
          "1.5s after the disconnect (sweeps ran): still 1 process, "
          "1 fiber, no grace eviction",
          (st.get("processes"), st.get("fibers"), evicted(st, "grace")))

    c2 = connect(dm, "c2")
    away = time.monotonic() - t_close
    log("reconnected %.2fs after the disconnect" % away)
    if away >= GRACE:
        fail("the reconnect came %.1fs after the disconnect, not within "
             "scope_grace %ds: the host is too slow for this test"
             % (away, GRACE))
    ev = event(c2, stub, "after-reconnect", fiber="req-1")
    check(ev.get("tags") == {"proc_tag": "P", "fiber_tag": "F"},
          "event after the reconnect carries the process scope's and the "
          "fiber's tags", ev.get("tags"))
    check(ev.get("user") == {"id": "u1"}, "... and the fiber's user",
          ev.get("user"))
    check(crumb_messages(ev) == ["before the disconnect"],
          "... and the fiber's crumb", crumb_messages(ev))

    c2.close()
    t_close = time.monotonic()

    def gone():
        st = dm.status()
        return st if st.get("processes") == 0 else None
    st = wait_until(gone, GRACE + 6, "the process to be freed after its "
                    "grace (status processes == 0)")
    after = time.monotonic() - t_close
    log("process freed %.2fs after its last connection closed" % after)
    check(after >= GRACE, "not freed before scope_grace (%ds) had passed"
          % GRACE, "%.2fs" % after)
    check(st.get("fibers") == 0, "status fibers == 0", st.get("fibers"))
    check(evicted(st, "grace") == 1,
          "counters.fibers_evicted.grace == 1 (the fiber freed with its "
          "process)", counter(st, "fibers_evicted"))
    check(evicted(st, "lru") == 0 and evicted(st, "ttl") == 0,
          "no lru or ttl evictions", counter(st, "fibers_evicted"))

    c3 = connect(dm, "c3")
    ev = event(c3, stub, "after-grace", fiber="req-1")
    check(not ev.get("tags"), "event after the grace carries none of the "
          "old tags (process or fiber)", ev.get("tags"))
    check("user" not in ev, "... no user", ev.get("user"))
    check(crumb_messages(ev) == [], "... no crumbs", crumb_messages(ev))
    c3.close()
    check(dm.stop() == 0, "SIGTERM: daemon exits 0")


def lru():
    log("== part b: max_fibers = 10, 15 fibers made: the 5 least recently "
        "used are evicted")
    dm, stub = start("lru", {"max_fibers": 10})
    c = connect(dm, "lru")
    for i in range(10):
        ack(c, {"op": "set", "fiber": "f%d" % i, "id": "s%d" % i,
                "tags": {"fib": "f%d" % i}})
    st = dm.status()
    check(st.get("fibers") == 10 and evicted(st, "lru") == 0,
          "10 fibers live, none evicted yet",
          (st.get("fibers"), evicted(st, "lru")))
    # f0 is the oldest; using it makes f1 the least recently used.
    ack(c, {"op": "set", "fiber": "f0", "id": "touch",
             "tags": {"touched": "yes"}})
    for i in range(10, 15):
        ack(c, {"op": "set", "fiber": "f%d" % i, "id": "s%d" % i,
                "tags": {"fib": "f%d" % i}})
    st = dm.status()
    check(evicted(st, "lru") == 5, "counters.fibers_evicted.lru == 5",
          counter(st, "fibers_evicted"))
    check(st.get("fibers") == 10, "status fibers == 10 (max_fibers)",
          st.get("fibers"))
    live = live_fibers(dm, c_pid())
    want = {"f0"} | {"f%d" % i for i in range(6, 15)}
    check(set(live) == want, "live fibers are f0 (touched) and f6..f14: "
          "f1..f5, the least recently used, were evicted", sorted(live))

    ev = event(c, stub, "f0-event", fiber="f0")
    check(ev.get("tags") == {"fib": "f0", "touched": "yes"},
          "the touched early fiber f0 kept its tags", ev.get("tags"))
    ev = event(c, stub, "f1-event", fiber="f1")
    check(not ev.get("tags"), "evicted fiber f1's event carries none of "
          "its tags", ev.get("tags"))
    ev = event(c, stub, "f14-event", fiber="f14")
    check(ev.get("tags") == {"fib": "f14"}, "the newest fiber f14 has its "
          "tags", ev.get("tags"))
    st = dm.status()
    check(st.get("fibers") == 10 and evicted(st, "lru") == 5,
          "an event for an evicted fiber makes no scope: still 10 live, "
          "5 evicted", (st.get("fibers"), evicted(st, "lru")))
    check(evicted(st, "ttl") == 0 and evicted(st, "grace") == 0,
          "no ttl or grace evictions", counter(st, "fibers_evicted"))
    c.close()
    check(dm.stop() == 0, "SIGTERM: daemon exits 0")


def ttl():
    log("== part c: fiber_ttl = 2s: an idle fiber is freed, a busy one "
        "is kept")
    dm, stub = start("ttl", {"fiber_ttl": "2s"})
    c = connect(dm, "ttl")
    ack(c, {"op": "set", "fiber": "idle", "id": "si",
            "tags": {"who": "idle"}})
    ack(c, {"op": "set", "fiber": 77, "id": "sb", "tags": {"who": "busy"}})
    st = dm.status()
    check(st.get("fibers") == 2, "2 fibers live", st.get("fibers"))
    t0 = time.monotonic()
    n = [0]

    def idle_freed():
        # keep fiber 77 in use (a set without id: no reply on success)
        c.send({"op": "set", "fiber": "77", "tags": {"n": n[0]}})
        n[0] += 1
        st = dm.status()
        return st if evicted(st, "ttl") >= 1 else None
    st = wait_until(idle_freed, 15, "counters.fibers_evicted.ttl >= 1",
                    interval=0.1)
    log("idle fiber freed after %.2fs (%d sets kept the other busy)"
        % (time.monotonic() - t0, n[0]))
    check(time.monotonic() - t0 >= 2, "not freed before fiber_ttl had "
          "passed", "%.2fs" % (time.monotonic() - t0))
    check(evicted(st, "ttl") == 1, "counters.fibers_evicted.ttl == 1",
          counter(st, "fibers_evicted"))
    check(evicted(st, "lru") == 0 and evicted(st, "grace") == 0,
          "no lru or grace evictions", counter(st, "fibers_evicted"))
    check(st.get("fibers") == 1 and st.get("processes") == 1,
          "1 fiber and the process left", (st.get("fibers"),
                                            st.get("processes")))
    check(c.pending_replies() == 0, "no set was answered (none failed)",
          c.pending_replies())
    live = live_fibers(dm, c_pid())
    check(set(live) == {"77"}, "the busy fiber 77 is the one left",
          sorted(live))
    ev = event(c, stub, "idle-event", fiber="idle")
    check(not ev.get("tags"), "the freed fiber's next event carries none "
          "of its tags", ev.get("tags"))
    ev = event(c, stub, "busy-event", fiber=77)
    check((ev.get("tags") or {}).get("who") == "busy",
          "the busy fiber's event still carries its tags", ev.get("tags"))
    c.close()
    check(dm.stop() == 0, "SIGTERM: daemon exits 0")


def listing():
    log("== part d: errrelayctl fibers --json and --pid N")
    dm, stub = start("list", {})
    me = c_pid()
    c = connect(dm, "lister")
    ack(c, {"op": "set", "id": "p", "tags": {"layer": "process"}})
    ack(c, {"op": "set", "fiber": "a", "id": "a1",
            "tags": {"req": "r-a", "layer": "fiber"},
            "user": {"id": "user-a"}})
    ack(c, {"op": "crumb", "fiber": "a", "id": "a2",
            "crumb": {"message": "crumb of a", "category": "test"}})
    ack(c, {"op": "set", "fiber": 5, "id": "n1", "tags": {"req": "r-5"}})
    other = Child(dm.socket)
    check(other.pid != me, "the second client is another process",
          (me, other.pid))
    other.ack({"op": "hello", "ack": True, "id": "h"})
    other.ack({"op": "set", "fiber": "a", "id": "o1",
               "tags": {"req": "r-other"}})

    o = scopes(dm)
    log("fibers --json: %s" % o)
    got = {(s.get("pid"), s.get("fiber")): s.get("scope")
           for s in o["scopes"]}
    want_keys = {(me, None), (me, "a"), (me, "5"), (other.pid, "a")}
    check(set(got) == want_keys, "fibers --json lists every live scope: "
          "process scope (fiber null) and fibers a, 5 of this process, "
          "fiber a of the other", sorted(got, key=str))
    check(o.get("count") == 4 and o.get("truncated") is False,
          "count == 4, truncated false", (o.get("count"),
                                           o.get("truncated")))
    check(got[(me, None)] == {"tags": {"layer": "process"}},
          "the process scope with its tags", got[(me, None)])
    sa = got[(me, "a")]
    check(sa.get("tags") == {"req": "r-a", "layer": "fiber"} and
          sa.get("user") == {"id": "user-a"},
          "fiber a with its tags and user", sa)
    crumbs = sa.get("breadcrumbs") or []
    check(len(crumbs) == 1 and crumbs[0].get("message") == "crumb of a"
          and isinstance(crumbs[0].get("timestamp"), (int, float)),
          "fiber a with its crumb (timestamp filled)", crumbs)
    check(got[(me, "5")] == {"tags": {"req": "r-5"}},
          "integer fiber 5 listed as \"5\" with its tags", got[(me, "5")])
    check(got[(other.pid, "a")] == {"tags": {"req": "r-other"}},
          "the other process's fiber a has its own tags",
          got[(other.pid, "a")])

    o = scopes(dm, "--pid", str(me))
    keys = {(s.get("pid"), s.get("fiber")) for s in o["scopes"]}
    check(keys == {(me, None), (me, "a"), (me, "5")},
          "fibers --pid %d --json lists only that process's scopes" % me,
          sorted(keys, key=str))
    o = scopes(dm, "--pid", str(other.pid))
    keys = {(s.get("pid"), s.get("fiber")) for s in o["scopes"]}
    check(keys == {(other.pid, "a")},
          "fibers --pid %d --json lists only the other process's fiber"
          % other.pid, sorted(keys, key=str))
    rc, out, err = dm.ctl("fibers", "--pid", str(me))
    log("fibers --pid %d (text):\n%s" % (me, out.rstrip()))
    check(rc == 0 and "fiber a" in out and "r-a" in out and
          "r-other" not in out,
          "text form of fibers --pid: exit 0, names fiber a with its tags, "
          "not the other process's", (rc, out, err))

    ev = event(c, stub, "listed", fiber="a")
    check(ev.get("tags") == {"layer": "fiber", "req": "r-a"},
          "fiber a's next event carries the listed tags (the fiber's "
          "layer over the process's)", ev.get("tags"))
    check(ev.get("user") == sa.get("user"), "... the listed user",
          ev.get("user"))
    check(crumb_messages(ev) == ["crumb of a"], "... the listed crumb",
          crumb_messages(ev))

    ack(c, {"op": "end", "fiber": "a", "id": "end-a"})
    keys = {s.get("fiber") for s in scopes(dm, "--pid", str(me))["scopes"]}
    check(keys == {None, "5"}, "after end, fiber a is no longer listed",
          keys)
    o = scopes(dm, "--pid", "999999999")
    check(o["scopes"] == [] and o.get("count") == 0,
          "--pid of an unknown process lists nothing", o)
    other.finish()
    c.close()
    check(dm.stop() == 0, "SIGTERM: daemon exits 0")


def c_pid():
    """The pid the daemon sees for this test's own connections."""
    return os.getpid()


def main():
    grace()
    lru()
    ttl()
    listing()


if __name__ == "__main__":
    run(main, deadline=120)
