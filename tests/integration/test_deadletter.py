"""test_deadletter.py -- acceptance: a 400 from the upstream sends the event
to dead letter; requeue delivers it (SPEC §5, §6, §11).

A sentry route (one envelope per event, so the stub can answer each event
by its message).  The stub answers "bad400 I" 400, "bad413 I" 413,
"slow408" 408 twice and then 200, everything else 200.  Acked events:
NORMAL good ones, 3 bad400, 2 bad413, 1 slow408 (mixed).

1. The good ones and slow408 are delivered (408 is retried, SPEC §11;
   `errrelayctl flush` skips the backoff waits); the 400s and 413s are
   dead-lettered: `errrelayctl dead --json` lists exactly them, oldest
   first, with route "default", status 400/413, a reason naming the
   status, time and received Unix times; count 5, not truncated.  The text
   form has one line per event and "5 dead-lettered event(s)" last.
   status: counters.dead == 5, routes[0].dead == 5, spool.rows == 0
   (nothing pending).  slow408 is never dead-lettered.
2. Permissions (SPEC §6), only when the test runs as root: with the temp
   dir 0755 and the control socket 0666, errrelayctl run as uid 65534
   (setpriv) may read (status: rc 0 or 1; dead --json lists the 5) but
   flush, dead --requeue and dead --requeue ID are refused: rc 1, one
   line on stderr saying "permission denied", and nothing changed.
   Then a second daemon runs as uid 65534: that uid (the daemon's own)
   and root may flush, uid 65533 may not.
3. The stub now accepts everything.  `dead --requeue ID` of one 400 event
   prints "requeued 1 event(s)", exit 0, and that event is delivered and
   gone from the list.  `dead --requeue NOTDEAD ID2` (NOTDEAD a delivered
   event) requeues ID2 but exits 1 naming NOTDEAD "not dead-lettered".
   `dead --requeue` (all) requeues the remaining 3 and they are delivered.
   The list is then empty ("0 dead-lettered event(s)"), each acked event
   was delivered exactly once, counters.dead is still 5 (counters count
   since start) and counters.delivered == all events.
"""

import json
import os
import shutil
import stat
import subprocess
import threading
import time

from harness import (Client, Daemon, binaries, check, counter, fail,
                     is_event_id, is_number, log, run, secrets_in, subdir, tmpdir,
                     wait_until)
from stub_upstream import Stub, parse_envelope

PUBKEY = "d1e2a3d4b5e6e7f8a9b0c1d2e3f4a5b6"
NORMAL = 10
NOBODY = 65534


def main():
    t_start = time.time()
    accept_all = threading.Event()
    tries_408 = [0]
    lock = threading.Lock()

    def behaviour(req, index):
        try:
            _, _, ev = parse_envelope(req.body)
        except AssertionError:
            return 422      # a malformed envelope: dead letter, and seen
        msg = str(ev.get("message"))
        if accept_all.is_set():
            return 200
        if msg.startswith("bad400 "):
            return 400
        if msg.startswith("bad413 "):
            return 413
        if msg == "slow408":
            with lock:
                tries_408[0] += 1
                return 408 if tries_408[0] <= 2 else 200
        return 200

    stub = Stub()
    stub.set_handler(behaviour)
    dsn = "http://%s@127.0.0.1:%d/42" % (PUBKEY, stub.port)
    dm = Daemon({"upstream": {"type": "sentry", "dsn": dsn}})
    dm.start()

    # ---- send the mix
    msgs = []
    for i in range(NORMAL):
        msgs.append("good %d" % i)
        if i in (1, 4, 7):
            msgs.append("bad400 %d" % i)
        if i in (2, 8):
            msgs.append("bad413 %d" % i)
        if i == 5:
            msgs.append("slow408")
    c = Client(dm.socket)
    c.hello(ack=True)
    for i, m in enumerate(msgs):
        c.send({"op": "event", "id": i, "event": {"message": m}})
    by_msg = {}
    for i, r in enumerate(c.replies(len(msgs), timeout=20)):
        if r.get("id") != i or r.get("ok") is not True or \
                not is_event_id(r.get("event_id")):
            fail("reply for event %d should be ok with event_id: %r"
                 % (i, r))
        by_msg[msgs[i]] = r["event_id"]
    check(len(set(by_msg.values())) == len(msgs), "%d events acked"
          % len(msgs), len(by_msg))
    bad400 = {by_msg[m] for m in msgs if m.startswith("bad400 ")}
    bad413 = {by_msg[m] for m in msgs if m.startswith("bad413 ")}
    dead_ids = bad400 | bad413
    good = {by_msg[m] for m in msgs if m.startswith("good ")}
    slow = by_msg["slow408"]
    status_of = {e: 400 for e in bad400}
    status_of.update({e: 413 for e in bad413})

    def delivered():
        return [h["event_id"] for h, _, _, _ in stub.sentry_envelopes()]

    # ---- 1. dead-lettered, the others delivered
    def settled():
        st = dm.status()
        r = (st.get("routes") or [{}])[0]
        if r.get("state") == "backoff":
            frc, out, err = dm.ctl("flush")
            if frc != 0:
                fail("errrelayctl flush failed: %r" % ((frc, out, err),))
        if (counter(st, "dead") or 0) > len(dead_ids):
            fail("counters.dead is %r, more than the %d events answered "
                 "400/413 (a 408 must be retried, not dead-lettered)"
                 % (counter(st, "dead"), len(dead_ids)))
        got = set(delivered())
        if (good | {slow}) <= got and counter(st, "dead") == len(dead_ids) \
                and st.get("spool", {}).get("rows") == 0:
            return st
        return None
    st = wait_until(settled, 30, "the good events and slow408 delivered, "
                    "%d dead-lettered, spool empty" % len(dead_ids))
    log("stub: %s" % stub.summary())
    check(stub.count(408) == 2, "slow408 was answered 408 twice, then "
          "retried until 200", stub.count(408))
    got = delivered()
    check(sorted(got) == sorted(good | {slow}),
          "each good event and slow408 delivered exactly once, no bad one",
          (len(got), len(set(got) & dead_ids)))
    check(stub.count(400) == len(bad400) and stub.count(413) == len(bad413),
          "each bad event was sent once: not retried after its 400/413",
          (stub.count(400), stub.count(413)))
    r = st["routes"][0]
    check(counter(st, "dead") == len(dead_ids), "counters.dead == %d"
          % len(dead_ids), counter(st, "dead"))
    check(r.get("dead") == len(dead_ids), "routes[0].dead == %d"
          % len(dead_ids), r.get("dead"))
    check(r.get("pending") == 0, "routes[0].pending == 0 (dead letters "
          "are not pending)", r.get("pending"))

    def dead_json():
        rc, out, err = dm.ctl("dead", "--json")
        check(rc == 0, "errrelayctl dead --json exits 0", (rc, err))
        try:
            o = json.loads(out)
        except ValueError:
            fail("dead --json is not JSON: %r" % out[:300])
        if not isinstance(o, dict) or not isinstance(o.get("dead"), list):
            fail("dead --json should be an object with a \"dead\" list: %r"
                 % out[:300])
        return o
    o = dead_json()
    lst = o["dead"]
    ids = [e.get("event_id") for e in lst]
    check(sorted(ids) == sorted(dead_ids), "dead --json lists exactly the "
          "%d events answered 400 or 413" % len(dead_ids), ids)
    check(o.get("count") == len(dead_ids) and o.get("truncated") is False,
          "count == %d, truncated false" % len(dead_ids),
          (o.get("count"), o.get("truncated")))
    t_now = time.time()
    for e in lst:
        eid = e.get("event_id")
        if e.get("route") != "default":
            fail("dead entry route should be \"default\": %r" % e)
        if e.get("status") != status_of[eid]:
            fail("dead entry %s should have status %d: %r"
                 % (eid, status_of[eid], e))
        if str(status_of[eid]) not in str(e.get("reason")):
            fail("dead entry reason should name the status %d: %r"
                 % (status_of[eid], e))
        for k in ("time", "received"):
            if not is_number(e.get(k)) or \
                    not t_start - 2 <= e[k] <= t_now + 2:
                fail("dead entry %s should be a Unix time of this test: %r"
                     % (k, e))
        if e["received"] > e["time"] + 1:
            fail("dead entry received after it was dead-lettered: %r" % e)
    check(True, "each entry: route default, its status (400/413), a reason "
          "naming it, time and received Unix times in this test", lst[0])
    times = [e["time"] for e in lst]
    check(times == sorted(times), "oldest first", times)

    rc, out, err = dm.ctl("dead")
    lines = out.splitlines()
    check(rc == 0 and lines and
          lines[-1] == "%d dead-lettered event(s)" % len(dead_ids),
          "errrelayctl dead: last line \"%d dead-lettered event(s)\""
          % len(dead_ids), (rc, lines[-1:], err))
    body = lines[:-1]
    check(len(body) == len(dead_ids) and
          all(any(eid in ln and "default" in ln and
                  str(status_of[eid]) in ln for ln in body)
              for eid in dead_ids),
          "errrelayctl dead: one line per event with event_id, route and "
          "status", body)

    # ---- 2. permissions
    permissions(dm, sorted(dead_ids))

    own_user()

    # ---- 3. requeue
    accept_all.set()
    one = sorted(bad400)[0]
    rc, out, err = dm.ctl("dead", "--requeue", one)
    check(rc == 0 and out == "requeued 1 event(s)\n" and err == "",
          "dead --requeue ID: exit 0, \"requeued 1 event(s)\"",
          (rc, out, err))
    wait_until(lambda: one in delivered(), 15, "the requeued event "
               "delivered")
    o = dead_json()
    left = {e.get("event_id") for e in o["dead"]}
    check(left == dead_ids - {one} and o.get("count") == len(left),
          "the requeued event is gone from the list, the others stay",
          (len(left), o.get("count")))

    rc, out, err = dm.ctl("dead", "--requeue", "not-an-event-id")
    check(rc == 1 and "event_id" in err and out == "",
          "dead --requeue of a malformed id: exit 1, an error naming "
          "event_id, nothing requeued", (rc, out, err))

    notdead = sorted(good)[0]
    two = sorted(bad413)[0]
    rc, out, err = dm.ctl("dead", "--requeue", notdead, two)
    check(rc == 1, "dead --requeue NOTDEAD ID exits 1", (rc, out, err))
    check(err == "errrelayctl: not dead-lettered: %s\n" % notdead,
          "stderr: \"errrelayctl: not dead-lettered: NOTDEAD\"", err)
    check(out == "requeued 1 event(s)\n", "the dead one is requeued anyway: "
          "\"requeued 1 event(s)\"", out)
    wait_until(lambda: two in delivered(), 15, "the second requeued event "
               "delivered")

    rest = dead_ids - {one, two}
    rc, out, err = dm.ctl("dead", "--requeue")
    check(rc == 0 and out == "requeued %d event(s)\n" % len(rest),
          "dead --requeue (all): exit 0, \"requeued %d event(s)\""
          % len(rest), (rc, out, err))
    wait_until(lambda: rest <= set(delivered()), 15, "all requeued events "
               "delivered")
    o = dead_json()
    check(o.get("dead") == [] and o.get("count") == 0,
          "the dead list is empty", o)
    rc, out, err = dm.ctl("dead")
    check(rc == 0 and out == "0 dead-lettered event(s)\n",
          "errrelayctl dead prints \"0 dead-lettered event(s)\"",
          (rc, out, err))
    rc, out, err = dm.ctl("dead", "--requeue")
    check(rc == 0 and out == "requeued 0 event(s)\n",
          "dead --requeue with nothing dead: \"requeued 0 event(s)\"",
          (rc, out, err))

    def final():
        st = dm.status()
        r = (st.get("routes") or [{}])[0]
        if st.get("spool", {}).get("rows") == 0 and r.get("state") == "ok" \
                and counter(st, "delivered") == len(msgs):
            return st
        return None
    st = wait_until(final, 15, "spool empty, route ok, all delivered")
    got = delivered()
    check(sorted(got) == sorted(by_msg.values()),
          "every acked event delivered exactly once in the end",
          (len(got), len(set(got))))
    check(counter(st, "dead") == len(dead_ids), "counters.dead still %d "
          "(counted since start)" % len(dead_ids), counter(st, "dead"))
    log("after requeue: routes[0].dead = %r, spool.dead = %r"
        % (st["routes"][0].get("dead"), st.get("spool", {}).get("dead")))
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def ctl_as(uid, dm, *args):
    """errrelayctl -s CONTROL args... run as uid (setpriv)."""
    _, ctl = binaries()
    cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
           "--clear-groups", ctl, "-s", dm.control] + list(args)
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if secrets_in(out + err):
        fail("errrelayctl %s printed a DSN key" % " ".join(args))
    return p.returncode, out, err


def permissions(dm, dead_ids):
    if os.geteuid() != 0:
        log("not root: the SO_PEERCRED permission part (flush/requeue "
            "refused to another uid) is skipped")
        return
    if shutil.which("setpriv") is None:
        log("setpriv (util-linux) not found: the permission part is "
            "skipped")
        return
    log("--- as uid %d" % NOBODY)
    d = os.path.dirname(os.path.abspath(dm.control))
    top = tmpdir()
    p = d
    while True:
        os.chmod(p, 0o755)
        if p == top or p == "/" or not p.startswith(top):
            break
        p = os.path.dirname(p)
    os.chmod(dm.control, 0o666)
    log("chmod 0755 %s, chmod 0666 %s" % (d, dm.control))
    mode = stat.S_IMODE(os.stat(dm.control).st_mode)
    check(mode == 0o666, "control socket is 0666 for this part", oct(mode))

    rc, out, err = ctl_as(NOBODY, dm, "status")
    check(rc in (0, 1) and "permission denied" not in (out + err).lower()
          and out.strip(), "status as uid %d answers (read-only: open to "
          "whoever can connect)" % NOBODY, (rc, out[:200], err))
    rc, out, err = ctl_as(NOBODY, dm, "dead", "--json")
    try:
        o = json.loads(out)
    except ValueError:
        o = None
    check(rc == 0 and isinstance(o, dict) and
          sorted(e.get("event_id") for e in o.get("dead", [])) == dead_ids,
          "dead --json as uid %d lists the %d dead letters (read-only)"
          % (NOBODY, len(dead_ids)), (rc, out[:200], err))

    for args in (("flush",), ("dead", "--requeue"),
                 ("dead", "--requeue", dead_ids[0])):
        rc, out, err = ctl_as(NOBODY, dm, *args)
        what = "errrelayctl %s as uid %d" % (" ".join(args), NOBODY)
        check(rc == 1, "%s is refused: exit 1" % what, (rc, out, err))
        check(len(err.splitlines()) == 1 and
              "permission denied" in err.lower() and err.endswith("\n"),
              "%s: one line on stderr saying permission denied" % what, err)
        check(out == "", "%s prints nothing on stdout" % what, out)
    rc, out, err = dm.ctl("dead", "--json")
    o = json.loads(out)
    check(sorted(e.get("event_id") for e in o.get("dead", [])) == dead_ids,
          "the refused requeues changed nothing: still %d dead letters"
          % len(dead_ids), o.get("count"))


def own_user():
    """A daemon running as uid NOBODY: that uid may flush (it is the
    daemon's own user), root may too, any other uid may not."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        log("not root (or no setpriv): the daemon's-own-uid part is skipped")
        return
    log("--- a daemon running as uid %d" % NOBODY)
    d = subdir("as-nobody")
    os.chmod(tmpdir(), 0o755)
    os.chmod(d, 0o777)
    dn = Daemon({"upstream": {"type": "file",
                              "path": os.path.join(d, "out.ndjson")}},
                dir=d, name="nobody-daemon", uid=NOBODY).start()
    check(os.stat(dn.control).st_uid == NOBODY,
          "the control socket belongs to the daemon's uid %d" % NOBODY,
          os.stat(dn.control).st_uid)
    rc, out, err = ctl_as(NOBODY, dn, "flush")
    check(rc == 0 and out.startswith("flush: "),
          "flush by the daemon's own uid is allowed", (rc, out, err))
    rc, out, err = dn.ctl("flush")
    check(rc == 0, "flush by root is allowed", (rc, out, err))
    os.chmod(dn.control, 0o666)
    rc, out, err = ctl_as(NOBODY - 1, dn, "flush")
    check(rc == 1 and "permission denied" in err.lower(),
          "flush by another uid (%d) is refused" % (NOBODY - 1),
          (rc, out, err))
    check(dn.stop() == 0, "the uid %d daemon exits 0" % NOBODY)


if __name__ == "__main__":
    run(main, deadline=90)
