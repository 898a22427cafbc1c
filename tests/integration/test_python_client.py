"""test_python_client.py -- the asyncio example client, end to end.

errrelayd runs with an http stub upstream; clients/python/errrelay_asyncio.py
(found from this file's location, since the tests run from a build dir) is
imported and driven from one event loop, in this process.

(a) ack mode: 200 concurrent request tasks, made with relay.create_task,
    each setting its own tags, user and crumb, yielding between calls; each
    spawns a child with relay.create_task, then changes its own tags; the
    child adds its own tag and crumb and captures a message; the parent
    raises and captures the exception.  Checked on the delivered events:
    - zero contamination: every event carries its own request's tags,
      user and crumbs and nothing of any other request;
    - child inherits parent: the child's event has the parent's tags,
      user and crumb as they were when the child was made, plus its own;
      the parent's later tag is not in it, the child's tag and crumb are
      not in the parent's event;
    - the exception event has type, value and frames oldest first, and the
      event_id returned by capture_* is the acked and delivered one;
    - a task made with plain asyncio.create_task (every tenth request)
      starts with an empty scope, not its creator's;
    - every task's scope was ended when it finished: status fibers == 0.
(b) fire-and-forget mode: the same load through a second client in the
    same process (the fiber ids must not collide with (a)'s scopes); the
    event_ids returned without replies are the delivered ones, and the
    same checks hold.
"""

import asyncio
import os
import random
import sys

from harness import Daemon, check, counter, fail, log, run, wait_until
from stub_upstream import Stub

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "clients", "python"))
import errrelay_asyncio  # noqa: E402

NTASKS = 200
SEED = 20240613


def explode(i):
    raise ValueError("boom %d" % i)


async def load(relay, mode, trace, rnd):
    """NTASKS request tasks; returns {event_id: (kind, i)}."""
    want = {}

    async def child(i):
        trace.append(i)
        await asyncio.sleep(0)
        await relay.set_tags({"child": "c%d" % i})
        await relay.add_breadcrumb("child crumb %d" % i, category="test")
        eid = await relay.capture_message("%s child %d" % (mode, i))
        want[eid] = ("child", i)

    async def orphan(i):
        await relay.set_tags({"orphan": "o%d" % i})
        eid = await relay.capture_message("%s orphan %d" % (mode, i))
        want[eid] = ("orphan", i)

    async def request(i):
        for _ in range(rnd.randrange(3)):
            await asyncio.sleep(0)
        trace.append(i)
        await relay.set_tags({"req": "r%d" % i, "task": str(i)})
        await asyncio.sleep(0)
        trace.append(i)
        await relay.set_user({"id": "u%d" % i, "username": "user %d" % i})
        await asyncio.sleep(0)
        trace.append(i)
        await relay.add_breadcrumb("crumb %d" % i, category="test")
        c = relay.create_task(child(i))
        await relay.set_tags({"after_fork": "a%d" % i})
        o = asyncio.create_task(orphan(i)) if i % 10 == 0 else None
        await c
        if o is not None:
            await o
        trace.append(i)
        try:
            explode(i)
        except ValueError:
            eid = await relay.capture_exception(extra={"i": i})
        want[eid] = ("parent", i)

    await asyncio.gather(*(relay.create_task(request(i))
                           for i in range(NTASKS)))
    return want


def crumbs(ev):
    bc = ev.get("breadcrumbs")
    return [b.get("message") for b in bc.get("values", [])] \
        if isinstance(bc, dict) else None


def expected(mode, kind, i):
    """(message or None, tags, user, crumbs) an event should have."""
    user = {"id": "u%d" % i, "username": "user %d" % i}
    base = {"svc": "pytest-%s" % mode}
    if kind == "orphan":
        return ("%s orphan %d" % (mode, i),
                dict(base, orphan="o%d" % i), None, None)
    tags = dict(base, req="r%d" % i, task=str(i))
    if kind == "child":
        return ("%s child %d" % (mode, i), dict(tags, child="c%d" % i), user,
                ["crumb %d" % i, "child crumb %d" % i])
    return (None, dict(tags, after_fork="a%d" % i), user, ["crumb %d" % i])


def verify(mode, want, stub):
    def all_there():
        evs = {e.get("event_id"): e for e in stub.http_events()}
        return evs if set(want) <= set(evs) else None
    evs = wait_until(all_there, 30, "the %d %s events at the stub"
                     % (len(want), mode))
    nwant = NTASKS * 2 + NTASKS // 10
    check(len(want) == nwant, "%s: %d distinct event_ids returned "
          "(parent, child, orphan)" % (mode, nwant), len(want))
    for eid, (kind, i) in want.items():
        ev = evs[eid]
        what = "%s %s event of request %d (%s)" % (mode, kind, i, eid)
        msg, tags, user, cr = expected(mode, kind, i)
        if msg is not None and ev.get("message") != msg:
            fail("%s: message should be %r, saw %r" % (what, msg,
                                                       ev.get("message")))
        if ev.get("tags") != tags:
            fail("%s: tags should be exactly %r, saw %r"
                 % (what, tags, ev.get("tags")))
        if ev.get("user") != user:
            fail("%s: user should be %r, saw %r" % (what, user,
                                                    ev.get("user")))
        if crumbs(ev) != cr:
            fail("%s: crumbs should be %r, saw %r" % (what, cr, crumbs(ev)))
        if kind == "parent":
            exc = (ev.get("exception") or {}).get("values") or [{}]
            frames = (exc[0].get("stacktrace") or {}).get("frames") or []
            funcs = [f.get("function") for f in frames]
            if exc[0].get("type") != "ValueError" or \
                    exc[0].get("value") != "boom %d" % i or \
                    funcs != ["request", "explode"]:
                fail("%s: exception should be ValueError 'boom %d' with "
                     "frames request, explode (oldest first), saw %r"
                     % (what, i, exc))
            if ev.get("extra") != {"i": i} or ev.get("level") != "error":
                fail("%s: extra {'i': %d}, level error; saw %r, %r"
                     % (what, i, ev.get("extra"), ev.get("level")))
    check(True, "%s: zero contamination: each of the %d events carries "
          "exactly its own request's tags, user and crumbs" % (mode, nwant))
    check(True, "%s: each child event has its parent's tags, user and crumb "
          "as at the fork plus its own; the parent's later tag and the "
          "child's changes stay on their side" % mode)
    check(True, "%s: plain asyncio.create_task tasks start with an empty "
          "scope" % mode)
    check(True, "%s: exception events: ValueError, value, frames request "
          "then explode (oldest first), extra, level error" % mode)
    return evs


async def run_mode(dm, mode, ack):
    rnd = random.Random(SEED)
    relay = errrelay_asyncio.ErrRelay(dm.socket, app="pytest", ack=ack)
    await relay.connect()
    await relay.set_tags({"svc": "pytest-%s" % mode}, process=True)
    trace = []
    want = await load(relay, mode, trace, rnd)
    # the process scope is this process's: clear it for the next mode
    await relay.set_tags({"svc": None}, process=True)
    await relay.close()
    switches = sum(1 for a, b in zip(trace, trace[1:]) if a != b)
    log("%s: %d of %d consecutive client calls came from different tasks"
        % (mode, switches, len(trace) - 1))
    check(switches > NTASKS, "%s: the tasks really ran interleaved" % mode,
          switches)
    return want


def main():
    log("random seed %d" % SEED)
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}})
    dm.start()

    log("== part a: ack mode, %d concurrent tasks" % NTASKS)
    want = asyncio.run(run_mode(dm, "ack", True))
    st = dm.status()
    check(st.get("fibers") == 0, "ack: every task's scope was ended when "
          "it finished (status fibers == 0)", st.get("fibers"))
    verify("ack", want, stub)

    log("== part b: fire-and-forget mode, %d concurrent tasks" % NTASKS)
    want_b = asyncio.run(run_mode(dm, "faf", False))
    check(not set(want_b) & set(want), "faf: event_ids distinct from (a)'s")
    verify("faf", want_b, stub)
    def no_fibers():
        st = dm.status()
        return st if st.get("fibers") == 0 else None
    st = wait_until(no_fibers, 10, "faf: every task's scope was ended "
                    "(status fibers == 0)")
    check(counter(st, "rejected", "bad_field") == 0 and
          counter(st, "rejected", "bad_json") == 0,
          "no message of the client was rejected",
          counter(st, "rejected"))
    check(sum(counter(st, "fibers_evicted").values()) == 0,
          "no scope was evicted (all ended by the client)",
          counter(st, "fibers_evicted"))
    check(dm.stop() == 0, "SIGTERM: daemon exits 0")


if __name__ == "__main__":
    run(main, deadline=120)
