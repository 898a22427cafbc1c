"""test_tls.py -- TLS upstreams: certificates and host names are verified.

Acceptance: "A self-signed TLS upstream is refused; with ca_file it is
accepted."  SPEC section 5: TLS certificates and host names are always
verified, ca_file adds a private CA; network errors are retried (never
dead-lettered).

Certificates are made at test time with the openssl CLI in the test's
temp dir: a self-signed one for IP 127.0.0.1, a private CA with a server
certificate for IP 127.0.0.1, and one signed by the same CA for
DNS:wrong.example only.  Every upstream is a stub serving HTTPS on
127.0.0.1.

(a) http route to the self-signed upstream, no ca_file: N acked events
    are not delivered: the stub sees TLS handshakes fail (conn_errors > 0)
    and no HTTP request at all, also after the retry that follows the
    backoff; status --json shows the route in "backoff" with a
    last_error naming the certificate, pending == N, nothing delivered or
    dead-lettered, errrelayctl status exits 1 (degraded).
(b) the same daemon restarted with ca_file = the self-signed certificate:
    the N events held since (a) and M new ones are all delivered to the
    same upstream; the route is "ok" with nothing pending.
(d) http route with ca_file = the private CA, upstream serving the
    certificate for wrong.example (a valid chain, the wrong name):
    refused as in (a), except that the stub sees the handshake complete
    (the client checks the name after it) and the connection closed with
    no request; last_error says the name does not match.
(c) the same daemon restarted with the url pointing at an upstream that
    serves the CA-signed certificate for 127.0.0.1: the events held since
    (d) and M new ones are delivered; the wrong-name upstream still saw no
    request.  So the CA alone was trusted, and only the name refused (d).
(e) sentry route with DSN https://KEY@127.0.0.1:PORT/42: without ca_file
    refused as in (a); restarted with ca_file = the CA, every acked event
    arrives as one well-formed envelope at /api/42/envelope/.  errrelayctl
    status (text and --json) runs in both states, so the harness's check
    that the DSN key appears in no log and no ctl output covers TLS
    failures too.
"""

import os
import shutil
import subprocess
import sys

from harness import (Client, Daemon, check, counter, fail, log, run,
                     subdir, wait_until)
from stub_upstream import Stub

N = 10          # events sent while the upstream is refused
M = 5           # events sent after the restart that trusts it
SENTRY_KEY = "7157a11ce0ffee5ec4e7d5b1c2a3f4e5"
OPENSSL_TIMEOUT = 30


# ------------------------------------------------------------ certificates

def openssl(*args, cwd):
    try:
        p = subprocess.run(["openssl"] + list(args), cwd=cwd,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=OPENSSL_TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("openssl %s did not finish in %ds" % (args[0], OPENSSL_TIMEOUT))
    if p.returncode != 0:
        fail("openssl %s exited %d: %s" % (" ".join(args), p.returncode,
             p.stderr.decode("utf-8", "replace").strip()))


def make_certs(d):
    """Write the certificates into d; returns {name: path}."""
    c = {k: os.path.join(d, k) for k in (
        "self.pem", "self.key", "ca.pem", "ca.key",
        "server.pem", "server.key", "server.csr", "server.ext",
        "wrong.pem", "wrong.key", "wrong.csr", "wrong.ext")}
    # (1) self-signed, for IP 127.0.0.1
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", c["self.key"], "-out", c["self.pem"], cwd=d)
    # (2) a private CA ...
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=errrelay test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", c["ca.key"], "-out", c["ca.pem"], cwd=d)
    # ... a server certificate it signs for IP 127.0.0.1, and (3) one it
    # signs for DNS:wrong.example only
    for name, cn, san, serial in (
            ("server", "127.0.0.1", "IP:127.0.0.1", "4101"),
            ("wrong", "wrong.example", "DNS:wrong.example", "4102")):
        with open(c[name + ".ext"], "w") as f:
            f.write("subjectAltName=%s\n"
                    "basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes",
                "-subj", "/CN=%s" % cn,
                "-keyout", c[name + ".key"], "-out", c[name + ".csr"], cwd=d)
        openssl("x509", "-req", "-in", c[name + ".csr"],
                "-CA", c["ca.pem"], "-CAkey", c["ca.key"],
                "-set_serial", serial, "-days", "2",
                "-extfile", c[name + ".ext"], "-out", c[name + ".pem"],
                cwd=d)
    log("certificates made in %s" % d)
    return c


# ------------------------------------------------------------ helpers

def tls_daemon(name, upstream):
    dm = Daemon({"daemon": {"shutdown_timeout": "2s"}, "upstream": upstream},
                dir=subdir(name), name=name)
    return dm


def count_connections(stub):
    """Count the TCP connections stub accepts, in stub.accepted.

    Local to this test: Stub counts only failed TLS handshakes
    (conn_errors), but a client that refuses the host name completes the
    handshake and then just closes, so the stub sees neither an error nor
    a request.  serve_forever calls process_request in one thread, so the
    counter has one writer.
    """
    stub.accepted = 0
    orig = stub.server.process_request

    def counted(request, client_address):
        stub.accepted += 1
        return orig(request, client_address)
    stub.server.process_request = counted
    return stub


def default_route(st):
    for r in st.get("routes") or []:
        if r.get("name") == "default":
            return r
    return None


def expect_refused(dm, stub, n, what, name_check=False):
    """The n events acked on dm are held: TLS refused, no request.

    The stub's evidence: a failed handshake (conn_errors) when the
    certificate chain is refused; when only the host name is wrong
    (name_check) the handshake completes before the client checks the
    name, so the evidence is a connection accepted and no request."""
    def evidence():
        if name_check:
            return stub.accepted > 0
        return stub.conn_errors > 0

    def refused():
        if stub.count() > 0:
            fail("%s: the upstream received an HTTP request, so the "
                 "certificate was not refused: %s" % (what, stub.summary()))
        rc, st = dm.status(with_rc=True)
        r = default_route(st)
        if evidence() and r is not None and \
                r.get("state") == "backoff" and r.get("last_error"):
            return rc, st, r
        return None
    rc, st, r = wait_until(refused, 15, "%s: %s at the stub and the route "
                           "in backoff" % (what, "a TLS connection"
                                           if name_check else
                                           "a failed TLS handshake"))
    log("%s: route %s" % (what, r))
    log("%s: stub accepted %s connection(s), %d failed TLS handshake(s)"
        % (what, getattr(stub, "accepted", "?"), stub.conn_errors))
    err = r.get("last_error")
    check(isinstance(err, str) and "certificate" in err.lower(),
          "%s: last_error names the certificate problem" % what, err)
    if name_check:
        check("name" in err.lower(), "%s: last_error says the name does "
              "not match (the chain itself is trusted)" % what, err)
    check(stub.count() == 0, "%s: the upstream received no HTTP request"
          % what, stub.summary())
    check(r.get("pending") == n, "%s: route pending == %d events sent"
          % (what, n), r.get("pending"))
    check(st.get("spool", {}).get("rows") == n, "%s: spool.rows == %d"
          % (what, n), st.get("spool"))
    check(r.get("delivered") == 0 and counter(st, "delivered") == 0,
          "%s: nothing delivered" % what,
          (r.get("delivered"), counter(st, "delivered")))
    check(r.get("dead") == 0 and counter(st, "dead") == 0,
          "%s: nothing dead-lettered (a TLS failure is retried)" % what,
          (r.get("dead"), counter(st, "dead")))
    check(rc == 1, "%s: errrelayctl status exits 1 (degraded)" % what, rc)
    rc, out, err = dm.ctl("status")
    check(rc == 1, "%s: errrelayctl status (text) exits 1" % what,
          (rc, err.strip()))


def expect_delivered(dm, stub, ids, what, sentry=False):
    """Every event_id in ids delivered to stub; the route healthy."""
    want = set(ids)

    def got():
        if sentry:
            have = {h["event_id"] for h, _, _, _ in stub.sentry_envelopes()}
        else:
            have = {e.get("event_id") for e in stub.http_events()}
        return have if want <= have else None
    wait_until(got, 20, "%s: all %d acked events at the upstream"
               % (what, len(want)))
    check(True, "%s: all %d acked events delivered" % (what, len(want)))
    check(not stub.decode_errors(), "%s: every body decoded" % what,
          stub.decode_errors())

    def healthy():
        rc, st = dm.status(with_rc=True)
        r = default_route(st)
        if r is not None and r.get("state") == "ok" and \
                r.get("pending") == 0 and \
                st.get("spool", {}).get("rows") == 0:
            return rc, st, r
        return None
    rc, st, r = wait_until(healthy, 15, "%s: route ok, nothing pending"
                           % what)
    check(r.get("dead") == 0, "%s: nothing dead-lettered" % what,
          r.get("dead"))
    check(rc == 0, "%s: errrelayctl status exits 0 (healthy)" % what, rc)
    rc, out, err = dm.ctl("status")
    check(rc == 0, "%s: errrelayctl status (text) exits 0" % what,
          (rc, err.strip()))


def send(dm, n, label):
    c = Client(dm.socket, name=label)
    c.hello(ack=True)
    ids = c.send_events(n, label)
    check(len(set(ids)) == n, "%s: %d events acked" % (label, n),
          len(set(ids)))
    c.close()
    return ids


def stop(dm, what):
    rc = dm.stop()
    check(rc == 0, "%s: SIGTERM: daemon exits 0" % what, rc)


# ------------------------------------------------------------ cases

def case_self_signed(certs):
    stub = Stub(tls=(certs["self.pem"], certs["self.key"]))
    up = {"type": "http",
          "url": "https://127.0.0.1:%d/ingest" % stub.port}
    dm = tls_daemon("selfsigned", up)
    dm.start()
    held = send(dm, N, "(a) self-signed")
    expect_refused(dm, stub, N, "(a) self-signed, no ca_file")
    before = stub.conn_errors
    wait_until(lambda: stub.conn_errors > before, 15,
               "(a) the retry after the backoff refused too (another "
               "failed TLS handshake)")
    check(stub.count() == 0, "(a) after the retry the upstream still "
          "received no HTTP request", stub.summary())
    stop(dm, "(a)")

    up["ca_file"] = certs["self.pem"]
    dm.configure({"daemon": {"shutdown_timeout": "2s"}, "upstream": up})
    dm.start()
    new = send(dm, M, "(b) self-signed trusted")
    expect_delivered(dm, stub, held + new,
                     "(b) ca_file = the self-signed certificate")
    stop(dm, "(b)")


def case_private_ca(certs):
    wrong = count_connections(Stub(tls=(certs["wrong.pem"],
                                        certs["wrong.key"])))
    good = Stub(tls=(certs["server.pem"], certs["server.key"]))
    up = {"type": "http",
          "url": "https://127.0.0.1:%d/ingest" % wrong.port,
          "ca_file": certs["ca.pem"]}
    dm = tls_daemon("privateca", up)
    dm.start()
    held = send(dm, N, "(d) wrong name")
    expect_refused(dm, wrong, N, "(d) CA-signed certificate for "
                   "wrong.example", name_check=True)
    stop(dm, "(d)")

    up["url"] = "https://127.0.0.1:%d/ingest" % good.port
    dm.configure({"daemon": {"shutdown_timeout": "2s"}, "upstream": up})
    dm.start()
    new = send(dm, M, "(c) private CA")
    expect_delivered(dm, good, held + new, "(c) ca_file = private CA, "
                     "server certificate for 127.0.0.1")
    check(good.conn_errors == 0, "(c) no failed TLS handshake at the "
          "upstream with the right certificate", good.conn_errors)
    check(wrong.count() == 0, "(c) the wrong-name upstream never received "
          "a request", wrong.summary())
    stop(dm, "(c)")


def case_sentry(certs):
    stub = Stub(tls=(certs["server.pem"], certs["server.key"]))
    dsn = "https://%s@127.0.0.1:%d/42" % (SENTRY_KEY, stub.port)
    up = {"type": "sentry", "dsn": dsn}
    dm = tls_daemon("sentry", up)
    dm.start()
    held = send(dm, N, "(e) sentry untrusted")
    expect_refused(dm, stub, N, "(e) sentry over https, no ca_file")
    stop(dm, "(e) untrusted")

    up["ca_file"] = certs["ca.pem"]
    dm.configure({"daemon": {"shutdown_timeout": "2s"}, "upstream": up})
    dm.start()
    new = send(dm, M, "(e) sentry")
    expect_delivered(dm, stub, held + new, "(e) sentry over https with "
                     "ca_file = private CA", sentry=True)
    envs = stub.sentry_envelopes()
    check(len(envs) == N + M and
          {h["event_id"] for h, _, _, _ in envs} == set(held + new),
          "(e) exactly one envelope per acked event", len(envs))
    for r in stub.requests():
        if r.method != "POST" or r.path != "/api/42/envelope/":
            fail("(e) request should be POST /api/42/envelope/, saw %s %s"
                 % (r.method, r.path))
        auth = r.headers.get("x-sentry-auth", "")
        if ("sentry_key=%s" % SENTRY_KEY) not in auth:
            fail("(e) X-Sentry-Auth should carry the DSN key, saw %r"
                 % auth)
    check(True, "(e) every request POST /api/42/envelope/ with the key in "
          "X-Sentry-Auth", stub.count())
    stop(dm, "(e)")


def main():
    certs = make_certs(subdir("certs"))
    case_self_signed(certs)
    case_private_ca(certs)
    case_sentry(certs)


if __name__ == "__main__":
    if shutil.which("openssl") is None:
        print("SKIP: the openssl binary is missing; test_tls.py makes its "
              "certificates with it", flush=True)
        sys.exit(77)
    run(main, deadline=60)
