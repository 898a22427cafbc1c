"""test_processes.py -- acceptance (b): processes never share scopes.

Two client processes (different PIDs: scope identity is the peer pid from
SO_PEERCRED) both use fiber "1" and their own process scope, with
different tags, users and crumbs, their operations interleaved; each
event must carry only its own process's data.  A "pid" field in a message
(claiming the other process) changes nothing.
"""

import json
import queue
import subprocess
import sys
import threading

from harness import Daemon, check, fail, is_event_id, log, run, wait_until
from stub_upstream import Stub

# The child: connect, print its pid, then for each JSON command line on
# stdin send it; if it has an "id", read one reply line and print it.
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
        r = f.readline()
        if not r:
            print(json.dumps({"eof": True}), flush=True)
            break
        print(r.decode().strip(), flush=True)
s.close()
'''


class Child:
    def __init__(self, name, path):
        self.name = name
        self.p = subprocess.Popen([sys.executable, "-c", CHILD, path],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = self._line(10)["pid"]
        log("client process %s has pid %d" % (name, self.pid))

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def _line(self, timeout):
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            fail("process %s: no output within %ds" % (self.name, timeout))
        if line is None:
            fail("process %s exited (status %s)" % (self.name,
                                                    self.p.poll()))
        return json.loads(line)

    def send(self, msg):
        """Send msg through the child; with an id, return its reply."""
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        if "id" in msg:
            r = self._line(15)
            if r.get("id") != msg["id"] or r.get("ok") is not True:
                fail("process %s: %s not ok: %r" % (self.name, msg["id"], r))
            return r
        return None

    def finish(self):
        self.p.stdin.close()
        self.p.wait(10)


def main():
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}})
    dm.start()
    a = Child("A", dm.socket)
    b = Child("B", dm.socket)
    check(a.pid != b.pid, "the two clients are different processes",
          (a.pid, b.pid))

    a.send({"op": "hello", "ack": True, "id": "h"})
    b.send({"op": "hello", "ack": True, "id": "h"})
    # interleaved: A then B on the same fiber "1" and the process scope
    a.send({"op": "set", "fiber": "1", "id": "s1",
            "tags": {"proc": "A", "onlyA": "yes"}, "user": {"id": "userA"}})
    b.send({"op": "set", "fiber": "1", "id": "s1",
            "tags": {"proc": "B", "onlyB": "yes"}, "user": {"id": "userB"}})
    a.send({"op": "crumb", "fiber": "1", "id": "c1",
            "crumb": {"message": "crumb of A"}})
    b.send({"op": "crumb", "fiber": "1", "id": "c1",
            "crumb": {"message": "crumb of B"}})
    a.send({"op": "set", "id": "p1", "tags": {"pscope": "A"}})
    b.send({"op": "set", "id": "p1", "tags": {"pscope": "B"}})
    # B claims to be A: the pid field must change nothing
    b.send({"op": "set", "fiber": "1", "id": "spoof", "pid": a.pid,
            "tags": {"spoof": "from-B"}})
    b.send({"op": "set", "id": "spoofp", "pid": a.pid,
            "tags": {"pspoof": "from-B"}})
    ra = a.send({"op": "event", "fiber": "1", "id": "eA", "pid": b.pid,
                 "event": {"message": "event of A"}})
    rb = b.send({"op": "event", "fiber": "1", "id": "eB", "pid": a.pid,
                 "event": {"message": "event of B"}})
    check(is_event_id(ra.get("event_id")) and is_event_id(rb.get("event_id")),
          "both events acked with event_ids", (ra, rb))

    want = {
        ra["event_id"]: ("A", {"proc": "A", "onlyA": "yes", "pscope": "A"},
                         "userA", ["crumb of A"]),
        rb["event_id"]: ("B", {"proc": "B", "onlyB": "yes", "pscope": "B",
                               "spoof": "from-B", "pspoof": "from-B"},
                         "userB", ["crumb of B"]),
    }

    def both():
        evs = {e.get("event_id"): e for e in stub.http_events()}
        return evs if set(want) <= set(evs) else None
    evs = wait_until(both, 20, "both events at the stub")
    for eid, (who, tags, user, crumbs) in want.items():
        ev = evs[eid]
        log("process %s event: tags=%s user=%s" % (who, ev.get("tags"),
                                                   ev.get("user")))
        check(ev.get("message") == "event of %s" % who,
              "event_id acked to %s is %s's event" % (who, who),
              ev.get("message"))
        check(ev.get("tags") == tags,
              "process %s's event has exactly its own tags %s" % (who, tags),
              ev.get("tags"))
        check(ev.get("user") == {"id": user},
              "process %s's event has its own user" % who, ev.get("user"))
        msgs = [c.get("message") for c in
                (ev.get("breadcrumbs") or {}).get("values", [])]
        check(msgs == crumbs,
              "process %s's event has only its own crumbs" % who, msgs)
    a.finish()
    b.finish()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=60)
