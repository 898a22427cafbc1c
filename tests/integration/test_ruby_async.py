"""test_ruby_async.py -- the Ruby client under Async, end to end.

errrelayd runs with an http stub upstream; Ruby scripts from tests/ruby/
run with ``ruby -I clients/ruby/lib`` (paths from this file's location,
since the tests run from a build dir) and ERRRELAY_SOCKET set to the
daemon's data socket.  Each script prints JSON lines on stdout and keeps its
connection open until its stdin closes, so its live scopes can be listed
with ``errrelayctl fibers --pid``.

(a) the original bug: 500 concurrent Async tasks on one thread, each with
    its own user, tags and crumb, yielding, then raising and capturing
    "boom I": through errrelay no event carries anything but its own
    task's metadata, frames are oldest first, and every task's scope was
    ended (no fiber scope left).
(b) the same load with key_by: :thread (thread-local SDK behaviour) is
    contaminated: more than 100 of 500 events carry another task's data.
(c) a child task starts with its parent's scope; its changes reach neither
    its parent nor its siblings; a fork is a copy (the parent's later tag
    is not seen by the children).
(d) Errrelay::Rack around an app that raises, via Rack::MockRequest: the
    event has transaction "GET /orders/7", contexts.request.url, the user
    and the exception; the exception is re-raised; the next request on the
    same fiber sees nothing of the first.
(e) the client reconnects after the daemon restarts (process scope
    replayed) and after Process.fork (the child's messages go to its own
    pid's scopes).

Exit 77 (skip) when ruby, async or rack is not installed.
"""

import atexit
import json
import os
import queue
import re
import subprocess
import threading

from harness import (Daemon, check, fail, is_event_id, log, run, tmpdir,
                     wait_until)
from stub_upstream import Stub

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
RUBY_LIB = os.path.join(TOP, "clients", "ruby", "lib")
RUBY_TESTS = os.path.join(TOP, "tests", "ruby")
NTASKS = 500
SEED = 20240612

_procs = []


def _kill_all():
    for p in _procs:
        if p.p.poll() is None:
            try:
                p.p.kill()
                p.p.wait(5)
            except Exception:
                pass


atexit.register(_kill_all)


def ruby_available():
    try:
        p = subprocess.run(["ruby", "-e", 'require "async"; require "rack"'],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "ruby: %s" % e
    if p.returncode != 0:
        return p.stderr.decode("utf-8", "replace").strip()[:300]
    return None


class Ruby:
    """One ruby script: JSON lines from stdout, stderr kept in a file."""

    def __init__(self, name, script, args, socket_path):
        self.name = name
        self.errpath = os.path.join(tmpdir(), name + ".stderr")
        env = dict(os.environ)
        env["ERRRELAY_SOCKET"] = socket_path
        env.pop("ERRRELAY_APP", None)
        err = open(self.errpath, "wb")
        self.p = subprocess.Popen(
            ["ruby", "-W1", "-I", RUBY_LIB, os.path.join(RUBY_TESTS, script)]
            + [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            env=env, cwd=tmpdir())
        err.close()
        _procs.append(self)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        log("started ruby %s (pid %d): %s %s" % (name, self.p.pid, script,
                                                 " ".join(map(str, args))))

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def line(self, timeout=30):
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            fail("ruby %s: no output within %ds; stderr: %s"
                 % (self.name, timeout, self.stderr()[-2000:]))
        if line is None:
            fail("ruby %s exited (status %s) early; stderr: %s"
                 % (self.name, self.p.wait(5), self.stderr()[-2000:]))
        try:
            return json.loads(line)
        except ValueError:
            fail("ruby %s printed a line that is not JSON: %r"
                 % (self.name, line[:300]))

    def say(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def finish(self, timeout=15):
        """Close stdin, wait for exit 0; kill on timeout."""
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
            fail("ruby %s did not exit within %ds (killed)"
                 % (self.name, timeout))
        err = self.stderr()
        check(rc == 0, "ruby %s exits 0" % self.name, rc)
        check("errrelay:" not in err,
              "ruby %s: the client printed no warning" % self.name,
              err.strip()[-500:] or "nothing on stderr")


def fiber_scopes(dm, pid):
    """The live fiber scopes (not the process scope) of pid."""
    rc, out, err = dm.ctl("fibers", "--pid", str(pid), "--json")
    if rc != 0:
        fail("errrelayctl fibers exited %d: %s %s" % (rc, out, err))
    return [s for s in json.loads(out)["scopes"] if s.get("fiber") is not None]


def events_by_id(stub, ids, what, timeout=30):
    """{event_id: event} once all ids are at the stub."""
    want = set(ids)

    def there():
        got = {e.get("event_id"): e for e in stub.http_events()}
        return got if want <= set(got) else None
    return wait_until(there, timeout, what)


def crumb_msgs(ev):
    bc = ev.get("breadcrumbs")
    if bc is None:
        return []
    if not isinstance(bc, dict) or not isinstance(bc.get("values"), list):
        fail("breadcrumbs should be {\"values\": [...]}, saw %r" % (bc,))
    return [b.get("message") for b in bc["values"]]


# ------------------------------------------------------------------ (a) (b)

BOOM_RE = re.compile(r"^boom (\d+)$")


def load_run(dm, stub, mode):
    """Run async_load.rb; returns (events by task index, script summary)."""
    before = {e.get("event_id") for e in stub.http_events()}
    rb = Ruby("load-" + mode, "async_load.rb", [mode, NTASKS, SEED],
              dm.socket)
    info = rb.line(60)
    log("%s mode: script says %s" % (mode, json.dumps(info)))
    check(info.get("flushed") is True,
          "%s mode: the daemon answered the client's flush" % mode, info)
    check(info.get("threads") == 1,
          "%s mode: all %d tasks ran on one thread" % (mode, NTASKS),
          info.get("threads"))
    stats = info.get("stats", {})
    check(not stats.get("dropped") and not stats.get("io_errors"),
          "%s mode: the client dropped nothing" % mode, stats)

    def all_there():
        evs = [e for e in stub.http_events()
               if e.get("event_id") not in before]
        return evs if len(evs) >= NTASKS else None
    evs = wait_until(all_there, 40, "%d %s-mode events at the stub"
                     % (NTASKS, mode))
    by_task = {}
    for ev in evs:
        try:
            val = ev["exception"]["values"][-1]["value"]
        except (KeyError, IndexError, TypeError):
            fail("%s mode: event without exception.values: %r" % (mode, ev))
        m = BOOM_RE.match(val or "")
        if not m:
            fail("%s mode: exception value %r is not 'boom I'" % (mode, val))
        by_task.setdefault(int(m.group(1)), ev)
    check(sorted(by_task) == list(range(NTASKS)),
          "%s mode: one event for each of the %d tasks" % (mode, NTASKS),
          "%d distinct tasks in %d events" % (len(by_task), len(evs)))
    return by_task, info, rb


def contamination(by_task):
    """(foreign, inexact, examples): events carrying another task's user,
    tags or crumbs; events that are not exactly their own task's."""
    foreign = inexact = 0
    examples = []
    for i, ev in sorted(by_task.items()):
        own_user = {"id": "u%d" % i}
        own_tags = {"task": str(i), "req": "r%d" % i}
        own_crumbs = ["crumb %d" % i]
        user, tags, crumbs = ev.get("user"), ev.get("tags"), crumb_msgs(ev)
        alien = []
        if user is not None and user != own_user:
            alien.append("user %r" % (user,))
        if isinstance(tags, dict) and (
                tags.get("task") not in (None, str(i)) or
                tags.get("req") not in (None, "r%d" % i)):
            alien.append("tags %r" % (tags,))
        others = [c for c in crumbs if c != "crumb %d" % i]
        if others:
            alien.append("%d foreign crumbs (%s...)" % (len(others),
                                                         others[0]))
        if alien:
            foreign += 1
            if len(examples) < 3:
                examples.append("task %d: %s" % (i, "; ".join(alien)))
        if user != own_user or tags != own_tags or crumbs != own_crumbs:
            inexact += 1
    return foreign, inexact, examples


def check_frames(by_task, raise_line):
    """Sentry order: oldest frame first, the raise site last."""
    bad = []
    for i, ev in sorted(by_task.items()):
        exc = ev["exception"]["values"][-1]
        frames = (exc.get("stacktrace") or {}).get("frames") or []
        if exc.get("type") != "RuntimeError" or len(frames) < 2:
            bad.append((i, exc.get("type"), len(frames)))
            continue
        last, first = frames[-1], frames[0]
        for f in frames:
            if not (isinstance(f.get("filename"), str) and
                    isinstance(f.get("lineno"), int) and
                    isinstance(f.get("function"), str)):
                bad.append((i, "frame lacks filename/lineno/function", f))
                break
        if not (last.get("filename", "").endswith("async_load.rb") and
                last.get("lineno") == raise_line):
            bad.append((i, "newest frame is not the raise site", last))
        elif not (first.get("filename", "").endswith("async/task.rb") and
                  "make_fiber" in first.get("function", "")):
            bad.append((i, "oldest frame is not the task's fiber start",
                        first))
    check(not bad, "every event: type RuntimeError, frames with filename/"
          "lineno/function, oldest first (first: async/task.rb make_fiber, "
          "last: async_load.rb:%s, the raise)" % raise_line, bad[:3] or
          "%d events" % len(by_task))


def test_load(dm, stub):
    log("== (a) %d Async tasks on one thread, keyed by fiber" % NTASKS)
    by_task, info, rb = load_run(dm, stub, "fiber")
    foreign, inexact, examples = contamination(by_task)
    log("fiber mode: %d of %d events carry another task's metadata, %d are "
        "not exactly their own" % (foreign, NTASKS, inexact))
    check(foreign == 0 and inexact == 0,
          "fiber mode: 0 of %d events contaminated; each has exactly its "
          "task's user, tags and crumb" % NTASKS,
          examples or "foreign %d, inexact %d" % (foreign, inexact))
    check_frames(by_task, info["raise_line"])
    wait_until(lambda: fiber_scopes(dm, info["pid"]) == [], 10,
               "every task scope of pid %d to be ended" % info["pid"])
    log("ok: fiber mode: no fiber scope left for pid %d (every task's "
        "scope was ended)" % info["pid"])
    rb.finish()
    fiber_figures = (foreign, inexact)

    log("== (b) the same load keyed by thread (thread-local SDK)")
    by_task, info, rb = load_run(dm, stub, "thread")
    foreign, inexact, examples = contamination(by_task)
    log("thread mode: %d of %d events carry another task's metadata, %d are "
        "not exactly their own; e.g. %s" % (foreign, NTASKS, inexact,
                                            examples))
    check(foreign > 100,
          "thread mode: contamination shows (> 100 of %d events carry "
          "another task's metadata)" % NTASKS, foreign)
    scopes = fiber_scopes(dm, info["pid"])
    check(len(scopes) == 1,
          "thread mode: one scope for the whole thread", len(scopes))
    rb.finish()
    return fiber_figures, (foreign, inexact)


# ---------------------------------------------------------------------- (c)

def test_tree(dm, stub):
    log("== (c) scope inheritance along the task tree (ack mode)")
    rb = Ruby("tree", "async_tree.rb", [], dm.socket)
    ids = {}
    for _ in range(5):
        o = rb.line(30)
        if not is_event_id(o.get("event_id")):
            fail("tree: %s was not acked with an event_id: %r"
                 % (o.get("label"), o))
        ids[o["label"]] = o["event_id"]
    info = rb.line(10)
    log("tree: events %s; script says %s" % (ids, json.dumps(info)))
    evs = events_by_id(stub, ids.values(), "the 5 tree events")
    ev = {label: evs[eid] for label, eid in ids.items()}
    want = {
        "child 0": ({"parent": "p", "shared": "child-0", "child": "c0"},
                    {"id": "parent-user"}, ["parent crumb", "child crumb 0"]),
        "child 1": ({"parent": "p", "shared": "child-1", "child": "c1"},
                    {"id": "parent-user"}, ["parent crumb", "child crumb 1"]),
        "child 2": ({"parent": "p", "shared": "child-2", "child": "c2"},
                    {"id": "child-2-user"},
                    ["parent crumb", "child crumb 2"]),
        "grandchild": ({"parent": "p", "shared": "child-0", "child": "c0",
                        "grand": "g"}, {"id": "parent-user"},
                       ["parent crumb", "child crumb 0", "grand crumb"]),
        "parent": ({"parent": "p", "shared": "from-parent", "late": "x"},
                   {"id": "parent-user"}, ["parent crumb"]),
    }
    for label, (tags, user, crumbs) in want.items():
        e = ev[label]
        got = (e.get("tags"), e.get("user"), crumb_msgs(e))
        check(got == (tags, user, crumbs),
              "tree: %s has tags %r, user %r, crumbs %r"
              % (label, tags, user, crumbs), got)
    check(all(ev[label].get("message") == m for label, m in
              [("parent", "parent after children"), ("child 1", "child 1"),
               ("grandchild", "grandchild")]),
          "tree: each event is the one its label says")
    wait_until(lambda: fiber_scopes(dm, info["pid"]) == [], 10,
               "tree: the task scopes to be ended")
    log("ok: tree: no fiber scope left once the tasks finished")
    rb.finish()


# ---------------------------------------------------------------------- (d)

def test_rack(dm, stub):
    log("== (d) Errrelay::Rack with Rack::MockRequest (ack mode)")
    rb = Ruby("rack", "rack_mock.rb", [], dm.socket)
    res = {}
    for _ in range(3):
        o = rb.line(30)
        res[o["label"]] = o
    info = rb.line(10)
    log("rack: script says %s; %s" % (json.dumps(res), json.dumps(info)))
    check(res["order"].get("reraised") == "Shop::OrderError" and
          res["order"].get("reraised_message") == "order 7 is on fire",
          "rack: the app's exception is re-raised by the middleware",
          res["order"])
    check(res["health"].get("reraised") == "RuntimeError",
          "rack: second request's exception re-raised", res["health"])
    check(res["ok"].get("status") == 200, "rack: a good request passes "
          "through (200)", res["ok"])
    ids = {k: v.get("event_id") for k, v in res.items()}
    check(all(is_event_id(x) for x in ids.values()),
          "rack: every event acked, its event_id in env[errrelay.event_id]",
          ids)
    evs = events_by_id(stub, ids.values(), "the 3 rack events")
    o = evs[ids["order"]]
    exc = (o.get("exception") or {}).get("values") or [{}]
    got = {
        "transaction": o.get("transaction"),
        "url": ((o.get("contexts") or {}).get("request") or {}).get("url"),
        "query": ((o.get("contexts") or {}).get("request") or {}).get(
            "query_string"),
        "user": o.get("user"),
        "type": exc[-1].get("type"), "module": exc[-1].get("module"),
        "value": exc[-1].get("value"),
        "handled": (exc[-1].get("mechanism") or {}).get("handled"),
        "crumbs": crumb_msgs(o),
    }
    want = {
        "transaction": "GET /orders/7",
        "url": "http://example.org/orders/7", "query": "expand=items",
        "user": {"id": "u-7", "email": "seven@example.org"},
        "type": "OrderError", "module": "Shop",
        "value": "order 7 is on fire", "handled": False,
        "crumbs": ["GET /orders/7"],
    }
    check(got == want, "rack: the event has transaction GET /orders/7, "
          "contexts.request url and query_string, the user, the exception "
          "type/module/value (mechanism not handled), the request crumb",
          got)
    h = evs[ids["health"]]
    got = (h.get("transaction"), h.get("user"), crumb_msgs(h),
           h["exception"]["values"][-1].get("value"))
    check(got == ("GET /health", None, ["GET /health"], "health down"),
          "rack: the next request on the same fiber has its own "
          "transaction and crumb and no user of the first", got)
    k = evs[ids["ok"]]
    got = (k.get("transaction"), k.get("user"), k.get("message"),
           k.get("level"))
    check(got == ("GET /ok", {"id": "u-proc"}, "ok path note", "info"),
          "rack: the user from the middleware's proc reaches an event the "
          "app captured itself", got)
    wait_until(lambda: fiber_scopes(dm, info["pid"]) == [], 10,
               "rack: the request scopes to be ended")
    log("ok: rack: every request's scope was ended (no fiber scope left)")
    rb.finish()


# ---------------------------------------------------------------------- (e)

def test_reconnect_fork(dm, stub):
    log("== (e) reconnect after a daemon restart, and after fork")
    rb = Ruby("reconnect", "reconnect_fork.rb", [], dm.socket)
    one = rb.line(30)
    check(one.get("flushed") is True, "reconnect: first flush answered", one)
    rc = dm.stop()
    check(rc == 0, "daemon restart: SIGTERM exits 0", rc)
    dm.start()
    rb.say("go\n")
    two = rb.line(30)
    log("reconnect: script says %s" % json.dumps(two))
    ids = two["ids"]
    check(two.get("flushed") is True and two["child"].get("flushed") is True,
          "reconnect: flushes after the restart and in the child answered",
          (two.get("flushed"), two["child"].get("flushed")))
    check(two["stats"].get("reconnects", 0) >= 1 and
          two["stats"].get("connects") == 2,
          "reconnect: the broken connection was reopened once",
          two["stats"])
    check(two.get("child_status") == 0 and
          two["child"]["pid"] != one["pid"],
          "fork: the child ran under its own pid and exited 0",
          (two["child"]["pid"], one["pid"], two.get("child_status")))
    check(all(is_event_id(x) for x in ids.values()),
          "reconnect: all three events written", ids)
    evs = events_by_id(stub, ids.values(), "the 3 reconnect/fork events")
    tags = {k: evs[v].get("tags") for k, v in ids.items()}
    check(tags["before restart"] == {"proc": "main", "who": "parent"},
          "before the restart: process and fiber tags", tags)
    check(tags["after restart"] == {"proc": "main"},
          "after the restart: the process scope was replayed on the new "
          "connection (the fiber scope died with the old daemon)", tags)
    check(tags["from child"] == {"proc": "main"},
          "forked child: its own connection (no who=parent of the parent's "
          "fiber scope), the process scope replayed", tags)
    rb.finish()


def main():
    log("ruby lib %s, scripts %s, seed %d" % (RUBY_LIB, RUBY_TESTS, SEED))
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http", "url":
                              "http://127.0.0.1:%d/ingest" % stub.port}})
    dm.start()
    try:
        fiber, thread = test_load(dm, stub)
        test_tree(dm, stub)
        test_rack(dm, stub)
        test_reconnect_fork(dm, stub)
        log("figures: fiber mode %d foreign / %d inexact of %d; thread mode "
            "%d foreign / %d inexact of %d" % (fiber + (NTASKS,) + thread +
                                               (NTASKS,)))
        rc = dm.stop()
        check(rc == 0, "SIGTERM: daemon exits 0", rc)
    finally:
        _kill_all()


if __name__ == "__main__":
    WHY = ruby_available()
    if WHY is not None:
        log("SKIP: ruby with async and rack is not available: %s" % WHY)
        raise SystemExit(77)
    run(main, deadline=180)
