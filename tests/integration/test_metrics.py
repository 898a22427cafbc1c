"""test_metrics.py -- GET /metrics on metrics_listen (SPEC §7, §10, §11).

1. A daemon with metrics_listen = 127.0.0.1:PORT, the default route an
   http stub answering 200 and a route "app" a sentry DSN with a
   recognisable key whose stub answers 429 with Retry-After: 3600 (so the
   route sits rate limited and nothing changes while the test looks).
   The test sends 5 acked events on the default route, a line that is
   not JSON, and 3 acked events as app "app", and closes its clients.
   Once status shows the 5 delivered and the 3 pending:
   - GET /metrics answers 200 with Content-Type
     "text/plain; version=0.0.4; charset=utf-8", and the text is
     well-formed exposition format (one HELP and one TYPE per family
     before its samples, samples of a family together, counters and only
     counters ending in _total);
   - the values are what the test sent (received 8, stored 8, accepted
     8, rejected{code="bad_json"} 1 and 0 for every other code, delivered
     5, route default delivered 5 pending 0, route app pending 3 and
     state rate_limited one-hot, spool rows 3, connections 0);
   - every counter and gauge that status --json also has is equal to it
     (status is read before and after the scrape and nothing moves);
   - the DSN key, the stubs' URLs and "://" appear nowhere in the text;
   - HEAD /metrics is 200 with no body, GET /other is 404, POST /metrics
     is 405 with Allow: GET, HEAD;
   - the daemon owns exactly one listening TCP socket, on PORT;
   - SIGTERM with a half-sent scrape open: the daemon exits 0.
2. errrelayd -t rejects bad metrics_listen values with one line naming
   the file and the key, and accepts host:port and [v6addr]:port.
3. With metrics_listen unset the daemon runs and owns no listening TCP
   socket (/proc).
4. A daemon whose metrics port is taken exits 1 at start with an error
   line naming metrics_listen, the address and the cause.
"""

import os
import re
import socket
import subprocess
import urllib.error
import urllib.request

from harness import (Client, Daemon, ack_event, binaries, check, fail,
                     free_port, log, run, secrets_in, subdir, wait_until)
from stub_upstream import Stub

KEY = "3e7a1b2c4d5e6f708192a3b4c5d6e7f8"
N_DEFAULT = 5
N_APP = 3
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("ok", "backoff", "rate_limited", "unconfigured")

# An opener that never goes through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(port, path, method="GET"):
    """(status, headers, body) of one request to 127.0.0.1:port."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, e.headers, body


# ------------------------------------------------ a strict 0.0.4 reader

def parse_labels(s, line):
    """Labels of s (the text after '{'): (dict, rest after '}')."""
    labels = {}
    i = 0
    while True:
        m = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", s[i:])
        if m is None:
            fail("bad label name in %r" % line)
        name = m.group(0)
        i += len(name)
        if s[i:i + 2] != '="':
            fail("label without =\" in %r" % line)
        i += 2
        v = []
        while True:
            if i >= len(s):
                fail("unterminated label value in %r" % line)
            c = s[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                e = s[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    fail("bad escape \\%s in %r" % (e, line))
                v.append("\n" if e == "n" else e)
                i += 2
                continue
            v.append(c)
            i += 1
        if name in labels:
            fail("label %s twice in %r" % (name, line))
        labels[name] = "".join(v)
        if s[i:i + 1] == "}":
            return labels, s[i + 1:]
        if s[i:i + 1] != ",":
            fail("labels not separated by ',' in %r" % line)
        i += 1


def parse_prom(text):
    """{family: type} and {(name, frozenset(labels)): value}, checking the
    format as the module docstring says."""
    types, helps, samples = {}, set(), {}
    current = None
    closed = set()
    if text and not text.endswith("\n"):
        fail("the text does not end with a newline")
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            if name in helps:
                fail("two HELP lines for %s" % name)
            if len(line.split(" ", 3)) < 4:
                fail("HELP without text: %r" % line)
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge"):
                fail("bad TYPE line %r" % line)
            name, typ = parts[2], parts[3]
            if name in types:
                fail("two TYPE lines for %s" % name)
            if name not in helps:
                fail("TYPE before HELP for %s" % name)
            if (typ == "counter") != name.endswith("_total"):
                fail("%s is a %s: counters, and only they, end in _total"
                     % (name, typ))
            if current is not None:
                closed.add(current)
            types[name] = typ
            current = name
            continue
        if line.startswith("#"):
            fail("unexpected comment line %r" % line)
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if m is None:
            fail("bad sample line %r" % line)
        name = m.group(1)
        rest = line[len(name):]
        if name != current:
            fail("sample %r is not under its own TYPE line (current "
                 "family %s)" % (line, current))
        labels = {}
        if rest.startswith("{"):
            labels, rest = parse_labels(rest[1:], line)
        if not rest.startswith(" "):
            fail("no space before the value in %r" % line)
        try:
            value = float(rest[1:])
        except ValueError:
            fail("value is not a number in %r" % line)
        key = (name, frozenset(labels.items()))
        if key in samples:
            fail("sample %r twice" % line)
        samples[key] = value
    check(helps == set(types), "every family has one HELP and one TYPE line",
          sorted(helps ^ set(types)))
    return types, samples


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


# ---------------------------------------------------------- /proc probe

def listening_tcp_ports(pid):
    """Local ports of the TCP sockets in LISTEN state that pid owns."""
    inodes = set()
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            target = os.readlink(os.path.join(fddir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", target)
        if m:
            inodes.add(m.group(1))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            # local_address is HEXIP:HEXPORT, st 0A is LISTEN
            if cols[3] == "0A" and cols[9] in inodes:
                ports.append(int(cols[1].split(":")[1], 16))
    return sorted(ports)


# -------------------------------------------------------------- part 1

def routes_by_name(st):
    return {r.get("name"): r for r in st.get("routes") or []}


def served():
    log("=== part 1: a daemon serving /metrics")
    up = Stub(200)
    sentry = Stub(429, extra_headers={"Retry-After": "3600"})
    port = free_port()
    dsn = "http://%s@127.0.0.1:%d/1" % (KEY, sentry.port)
    dm = Daemon({"daemon": {"metrics_listen": "127.0.0.1:%d" % port,
                            "shutdown_timeout": "2s"},
                 "upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % up.port},
                 "route app": {"type": "sentry", "dsn": dsn,
                               "max_inflight": "1"}},
                dir=subdir("served"))
    dm.start()

    c = Client(dm.socket, "default")
    c.hello(ack=True)
    c.send_events(N_DEFAULT, "metrics")
    c.send_raw(b"this is not json\n")
    r = c.next_reply()
    check(r.get("ok") is False and r.get("error") == "bad_json",
          "a line that is not JSON is answered bad_json", r)
    a = Client(dm.socket, "app")
    a.hello(ack=True, app="app")
    for i in range(N_APP):
        ack_event(a, {"message": "app event %d" % i}, i)
    c.close()
    a.close()

    def settled():
        st = dm.status()
        rs = routes_by_name(st)
        d, p = rs.get("default", {}), rs.get("app", {})
        if (d.get("delivered") == N_DEFAULT and d.get("pending") == 0 and
                p.get("pending") == N_APP and
                p.get("state") == "rate_limited" and
                p.get("inflight") == 0 and
                st.get("connections") == 0):
            return st
        return None
    wait_until(settled, 20, "the default route to deliver %d events and "
               "route app to hold %d, rate limited, no client connected"
               % (N_DEFAULT, N_APP))

    st1 = dm.status()
    status, headers, body = http(port, "/metrics")
    st2 = dm.status()
    check(status == 200, "GET /metrics answers 200", status)
    check(headers.get("Content-Type") == CONTENT_TYPE,
          "Content-Type is the 0.0.4 text format",
          headers.get("Content-Type"))
    text = body.decode("utf-8")
    types, samples = parse_prom(text)
    log("%d families, %d samples" % (len(types), len(samples)))

    # What the test sent.
    want = [
        ("errrelay_events_received_total", {}, N_DEFAULT + N_APP),
        ("errrelay_events_accepted_total", {}, N_DEFAULT + N_APP),
        ("errrelay_events_stored_total", {}, N_DEFAULT + N_APP),
        ("errrelay_events_delivered_total", {}, N_DEFAULT),
        ("errrelay_events_dead_total", {}, 0),
        ("errrelay_events_rejected_total", {"code": "bad_json"}, 1),
        ("errrelay_events_dropped_total", {"cause": "overflow"}, 0),
        ("errrelay_events_dropped_total", {"cause": "expired"}, 0),
        ("errrelay_spool_rows", {}, N_APP),
        ("errrelay_spool_write_error", {}, 0),
        ("errrelay_connections", {}, 0),
        ("errrelay_route_delivered_total", {"route": "default"}, N_DEFAULT),
        ("errrelay_route_pending", {"route": "default"}, 0),
        ("errrelay_route_pending", {"route": "app"}, N_APP),
        ("errrelay_route_delivered_total", {"route": "app"}, 0),
        ("errrelay_route_inflight", {"route": "app"}, 0),
        ("errrelay_route_info", {"route": "default", "type": "http"}, 1),
        ("errrelay_route_info", {"route": "app", "type": "sentry"}, 1),
    ]
    for s in STATES:
        want.append(("errrelay_route_state", {"route": "app", "state": s},
                     1 if s == "rate_limited" else 0))
        want.append(("errrelay_route_state",
                      {"route": "default", "state": s},
                      1 if s == "ok" else 0))
    for code in ("line_too_long", "bad_op", "bad_field", "too_large",
                 "spool_full", "shutting_down"):
        want.append(("errrelay_events_rejected_total", {"code": code}, 0))
    bad = [(n, l, v, sample(samples, n, **l)) for n, l, v in want
           if sample(samples, n, **l) != v]
    check(not bad, "%d samples have the values the test sent" % len(want),
          bad)
    check(sample(samples, "errrelay_build_info",
                 version=st1.get("version")) == 1,
          "errrelay_build_info carries the version status prints",
          st1.get("version"))
    check(sample(samples, "errrelay_route_retry_in_seconds",
                 route="app") is not None and
          0 < sample(samples, "errrelay_route_retry_in_seconds",
                     route="app") <= 3600,
          "route app's retry_in_seconds is within the 3600 s window",
          sample(samples, "errrelay_route_retry_in_seconds", route="app"))
    check(sample(samples, "errrelay_route_last_success_timestamp_seconds",
                 route="app") is None,
          "route app never succeeded: no last_success sample", None)
    check(sample(samples, "errrelay_route_last_success_timestamp_seconds",
                 route="default") is not None,
          "route default has a last_success sample", None)

    # Equal to status --json, which did not move around the scrape.
    pairs = [
        ("errrelay_connections", {}, ("connections",)),
        ("errrelay_processes", {}, ("processes",)),
        ("errrelay_fibers", {}, ("fibers",)),
        ("errrelay_spool_rows", {}, ("spool", "rows")),
        ("errrelay_spool_bytes", {}, ("spool", "bytes")),
        ("errrelay_spool_max_bytes", {}, ("spool", "max_bytes")),
        ("errrelay_spool_dead_rows", {}, ("spool", "dead")),
        ("errrelay_healthy", {}, None),
    ]
    for k in ("received", "accepted", "stored", "duplicates", "delivered",
              "retried", "dead", "commits", "commit_errors"):
        name = {"commits": "errrelay_commits_total",
                "commit_errors": "errrelay_commit_errors_total"}.get(
                    k, "errrelay_events_%s_total" % k)
        pairs.append((name, {}, ("counters", k)))
    for group, label, name in (
            ("rejected", "code", "errrelay_events_rejected_total"),
            ("dropped", "cause", "errrelay_events_dropped_total"),
            ("fibers_evicted", "cause", "errrelay_fibers_evicted_total")):
        members = st1["counters"][group]
        check(len(members) > 0, "status has counters.%s" % group, members)
        for m in members:
            pairs.append((name, {label: m}, ("counters", group, m)))
    for rname in ("default", "app"):
        for k, name in (("pending", "errrelay_route_pending"),
                        ("inflight", "errrelay_route_inflight"),
                        ("delivered", "errrelay_route_delivered_total"),
                        ("dead", "errrelay_route_dead_total")):
            pairs.append((name, {"route": rname}, ("routes", rname, k)))

    def status_value(st, path):
        if path is None:
            return 1 if st.get("health") == "ok" else 0
        if path[0] == "routes":
            return routes_by_name(st)[path[1]][path[2]]
        v = st
        for p in path:
            v = v[p]
        return 1 if v is True else 0 if v is False else v
    diff = []
    for name, labels, path in pairs:
        v1, v2 = status_value(st1, path), status_value(st2, path)
        m = sample(samples, name, **labels)
        if not (v1 == v2 == m):
            diff.append((name, labels, v1, m, v2))
    check(not diff, "%d samples equal status --json (before == scrape == "
          "after)" % len(pairs), diff)
    check(sample(samples, "errrelay_healthy") == 0 and
          st1.get("health") == "degraded",
          "a rate-limited route: errrelay_healthy 0, status degraded",
          st1.get("health"))

    # No secret, no upstream address.
    check(not secrets_in(text) and KEY not in text,
          "the DSN key is not in the metrics text", secrets_in(text))
    for s in ("://", "127.0.0.1:%d" % sentry.port,
              "127.0.0.1:%d" % up.port, "/ingest"):
        check(s not in text, "%r is not in the metrics text" % s)

    # Other requests.
    status, headers, body = http(port, "/metrics", method="HEAD")
    check(status == 200 and body == b"" and
          headers.get("Content-Type") == CONTENT_TYPE,
          "HEAD /metrics: 200, the same Content-Type, no body",
          (status, headers.get("Content-Type"), body[:80]))
    status, _, _ = http(port, "/other")
    check(status == 404, "GET /other answers 404", status)
    status, _, _ = http(port, "/")
    check(status == 404, "GET / answers 404", status)
    status, headers, _ = http(port, "/metrics", method="POST")
    check(status == 405 and headers.get("Allow") == "GET, HEAD",
          "POST /metrics answers 405 with Allow: GET, HEAD",
          (status, headers.get("Allow")))
    status, _, body = http(port, "/metrics?name[]=x")
    check(status == 200 and b"errrelay_events_received_total" in body,
          "a query string is ignored", status)

    ports = listening_tcp_ports(dm.proc.pid)
    check(ports == [port], "the daemon listens on TCP port %d only" % port,
          ports)

    # A scraper that sent half a request does not hold the shutdown.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /metr")
    rc = dm.stop()
    check(rc == 0, "SIGTERM with a half-sent scrape open: exit 0", rc)
    s.settimeout(5)
    try:
        rest = s.recv(4096)
    except OSError as e:
        rest = e
    s.close()
    check(rest == b"" or isinstance(rest, ConnectionResetError),
          "the scraper's connection is closed", rest)
    up.close()
    sentry.close()


# -------------------------------------------------------------- part 2

def check_config():
    log("=== part 2: errrelayd -t and metrics_listen")
    d, _ = binaries()
    bad = ["127.0.0.1", "127.0.0.1:", ":9464", "127.0.0.1:0",
           "127.0.0.1:65536", "127.0.0.1:94x4", "[::1]9464", "[::1:9464",
           "http://127.0.0.1:9464", "a b:9464"]
    for i, value in enumerate(bad):
        dm = Daemon({"daemon": {"metrics_listen": value}},
                    dir=subdir("t%d" % i), name="bad")
        p = subprocess.run([d, "-t", "-c", dm.confpath],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
        out = p.stdout.decode("utf-8", "replace")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        check(p.returncode == 1 and len(lines) == 1 and
              "metrics_listen" in lines[0] and dm.confpath in lines[0],
              "errrelayd -t rejects metrics_listen = %r in one line "
              "naming the file and the key" % value, out.strip())
    for i, value in enumerate(["127.0.0.1:9464", "localhost:9464",
                               "[::1]:9464", "0.0.0.0:1"]):
        dm = Daemon({"daemon": {"metrics_listen": value}},
                    dir=subdir("g%d" % i), name="good")
        p = subprocess.run([d, "-t", "-c", dm.confpath],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10)
        out = p.stdout.decode("utf-8", "replace").strip()
        check(p.returncode == 0 and out == "ok",
              "errrelayd -t accepts metrics_listen = %r" % value, out)


# -------------------------------------------------------------- part 3

def unset():
    log("=== part 3: metrics_listen unset")
    d = subdir("unset")
    dm = Daemon({"upstream": {"type": "file",
                              "path": os.path.join(d, "out.ndjson")}},
                dir=d)
    dm.start()
    rc, st = dm.status(with_rc=True)
    check(rc == 0 and st.get("health") == "ok",
          "the daemon runs and is healthy", (rc, st.get("health")))
    ports = listening_tcp_ports(dm.proc.pid)
    check(ports == [], "no listening TCP socket without metrics_listen",
          ports)
    check(dm.stop() == 0, "SIGTERM: exit 0")


# -------------------------------------------------------------- part 4

def port_taken():
    log("=== part 4: the metrics port is taken")
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    addr = "127.0.0.1:%d" % port
    d = subdir("taken")
    dm = Daemon({"daemon": {"metrics_listen": addr},
                 "upstream": {"type": "file",
                              "path": os.path.join(d, "out.ndjson")}},
                dir=d)
    d, _ = binaries()
    try:
        p = subprocess.run([d, "-c", dm.confpath], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=20, cwd=dm.dir)
    except subprocess.TimeoutExpired:
        fail("errrelayd kept running with its metrics port taken")
    finally:
        holder.close()
    err = p.stderr.decode("utf-8", "replace")
    log("errrelayd exited %d:\n%s" % (p.returncode, err.rstrip()))
    check(p.returncode == 1, "errrelayd exits 1 when it cannot listen",
          p.returncode)
    lines = [ln for ln in err.splitlines()
             if "metrics_listen" in ln and addr in ln]
    check(len(lines) == 1 and lines[0].startswith("<3>") and
          "in use" in lines[0].lower(),
          "one error line names metrics_listen, %s and the cause" % addr,
          err)


def main():
    served()
    check_config()
    unset()
    port_taken()


if __name__ == "__main__":
    run(main, deadline=90)
