"""stub_upstream.py -- a programmable HTTP upstream for the integration tests.

Stub() listens on 127.0.0.1, port chosen by the kernel (stub.port), serves
every request from its own thread (HTTP/1.1, keep-alive), and records each
one thread-safely: receipt time, method, path, headers, the raw body and the
body after Content-Encoding (gzip) is undone, and the status answered.

The answer is programmable: a fixed status (set_status), a list of
statuses used in order and then a default (set_sequence), or a callable
(set_handler) given the request record and its 0-based index, returning a
status or (status, extra headers).  extra_headers are added to every answer.

Helpers turn what was received into events:
- http_events(): the NDJSON lines of the bodies (one merged event a line);
- sentry_envelopes(): each body parsed strictly as a Sentry envelope
  holding one event (parse_envelope says what "strictly" means).
By default both look only at requests answered 2xx, i.e. what was
delivered.
"""

import gzip
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SENT_AT_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


class Request:
    """One request as the stub saw it."""

    def __init__(self, method, path, headers, raw):
        self.time = time.time()
        self.method = method
        self.path = path
        # header names lower-cased; a repeated header keeps its last value
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.raw = raw
        self.body = None
        self.decode_error = None
        self.status = None

    def ok(self):
        return self.status is not None and 200 <= self.status < 300

    def __repr__(self):
        return "<%s %s -> %s, %d bytes>" % (self.method, self.path,
                                            self.status, len(self.raw))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "errrelay-stub/1"
    # one write per answer, no Nagle: no 40 ms delayed-ACK stalls
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        stub = self.server.stub
        with stub._lock:
            stub.connections += 1

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers up to the blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self):
        stub = self.server.stub
        raw = self._read_body()
        with stub._lock:
            stub._active += 1
            stub.max_concurrent = max(stub.max_concurrent, stub._active)
        try:
            self._answer_request(stub, raw)
        finally:
            with stub._lock:
                stub._active -= 1

    def _answer_request(self, stub, raw):
        req = Request(self.command, self.path, self.headers, raw)
        enc = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            if enc in ("", "identity"):
                req.body = raw
            elif enc == "gzip":
                req.body = gzip.decompress(raw)
            else:
                raise ValueError("unsupported Content-Encoding %r" % enc)
        except Exception as e:
            req.decode_error = str(e)
        status, headers = stub._answer(req)
        if req.decode_error is not None:
            status = 400
        req.status = status
        body = b'{"id":"stub"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    do_POST = _serve
    do_PUT = _serve
    do_GET = _serve


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a connection that failed (a TLS handshake the client refused):
        # counted, not printed
        with self.stub._lock:
            self.stub.conn_errors += 1


class Stub:
    """port: 0 lets the kernel choose; a given port lets a test refuse
    connections first (nothing listening) and start the stub there later.
    tls: (certfile, keyfile) to serve HTTPS instead of HTTP."""

    def __init__(self, status=200, extra_headers=None, port=0, tls=None):
        self._lock = threading.Lock()
        self._requests = []
        self._status = status
        self._sequence = []
        self._handler = None
        self._active = 0
        self.max_concurrent = 0     # most requests being answered at once
        self.extra_headers = dict(extra_headers or {})
        self.conn_errors = 0       # connections that failed (TLS)
        self.connections = 0       # connections accepted
        self.server = _Server(("127.0.0.1", port), _Handler)
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.server.socket = ctx.wrap_socket(
                self.server.socket, server_side=True,
                do_handshake_on_connect=False)
        self.server.stub = self
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        try:
            import harness
            harness.register_stub(self)
        except ImportError:
            pass

    # ---- behaviour

    def set_status(self, status):
        with self._lock:
            self._status = status
            self._sequence = []
            self._handler = None

    def set_sequence(self, statuses, then=200):
        with self._lock:
            self._sequence = list(statuses)
            self._status = then
            self._handler = None

    def set_handler(self, fn):
        with self._lock:
            self._handler = fn

    def _answer(self, req):
        with self._lock:
            index = len(self._requests)
            self._requests.append(req)
            handler = self._handler
            if handler is None:
                status = (self._sequence.pop(0) if self._sequence
                          else self._status)
        headers = dict(self.extra_headers)
        if handler is not None:
            r = handler(req, index)
            if isinstance(r, tuple):
                status, more = r
                headers.update(more)
            else:
                status = r
        return status, headers

    # ---- what was received

    def requests(self):
        with self._lock:
            return list(self._requests)

    def count(self, status=None):
        return sum(1 for r in self.requests()
                   if status is None or r.status == status)

    def decode_errors(self):
        return [(r, r.decode_error) for r in self.requests()
                if r.decode_error is not None]

    def http_events(self, only_ok=True):
        """Events of NDJSON bodies, in arrival order."""
        out = []
        for r in self.requests():
            if r.status is None or (only_ok and not r.ok()):
                continue
            out.extend(parse_ndjson(r.body))
        return out

    def sentry_envelopes(self, only_ok=True):
        """(header, item_header, event, request) of every envelope."""
        out = []
        for r in self.requests():
            if r.status is None or (only_ok and not r.ok()):
                continue
            h, ih, ev = parse_envelope(r.body)
            out.append((h, ih, ev, r))
        return out

    def summary(self):
        by = {}
        for r in self.requests():
            by[r.status] = by.get(r.status, 0) + 1
        reqs = self.requests()
        each = []
        for r in reqs[:30]:
            n = (r.body.count(b"\n") if r.body is not None else "?")
            each.append("%s %s %s (%s lines, %.3f)" % (
                r.status, r.method, r.path, n, r.time))
        return "port %d, %d requests, by status %r:\n  %s" % (
            self.port, sum(by.values()), by, "\n  ".join(each))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def parse_ndjson(body):
    """Objects of an NDJSON body; AssertionError if a line is not one."""
    if body is None:
        raise AssertionError("request body could not be decoded")
    out = []
    for n, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except ValueError:
            raise AssertionError("NDJSON body line %d is not JSON: %r"
                                 % (n, line[:300]))
        if not isinstance(obj, dict):
            raise AssertionError("NDJSON body line %d is not an object: %r"
                                 % (n, line[:300]))
        out.append(obj)
    return out


def parse_envelope(body):
    """Parse a Sentry envelope holding exactly one event item.

    Strict: line 1 is a JSON object with event_id (32 lowercase hex) and
    sent_at (RFC 3339 string); line 2 an item header {"type": "event",
    "length": N}; then exactly N bytes of JSON payload whose event_id equals
    the header's, then at most one newline and nothing else.  Returns
    (header, item_header, event); AssertionError names what is wrong.
    """
    if body is None:
        raise AssertionError("envelope body could not be decoded")
    nl = body.find(b"\n")
    if nl < 0:
        raise AssertionError("envelope has no header line: %r" % body[:200])
    try:
        header = json.loads(body[:nl].decode("utf-8"))
    except ValueError:
        raise AssertionError("envelope header is not JSON: %r" % body[:nl])
    if not isinstance(header, dict):
        raise AssertionError("envelope header is not an object")
    eid = header.get("event_id")
    if not (isinstance(eid, str) and re.fullmatch(r"[0-9a-f]{32}", eid)):
        raise AssertionError("envelope header event_id is not 32 lowercase "
                             "hex: %r" % (eid,))
    sent_at = header.get("sent_at")
    if not (isinstance(sent_at, str) and SENT_AT_RE.match(sent_at)):
        raise AssertionError("envelope header sent_at is not an RFC 3339 "
                             "time: %r" % (sent_at,))
    rest = body[nl + 1:]
    nl2 = rest.find(b"\n")
    if nl2 < 0:
        raise AssertionError("envelope has no item header line")
    try:
        ih = json.loads(rest[:nl2].decode("utf-8"))
    except ValueError:
        raise AssertionError("item header is not JSON: %r" % rest[:nl2])
    if not isinstance(ih, dict) or ih.get("type") != "event":
        raise AssertionError("item header type is not \"event\": %r" % (ih,))
    length = ih.get("length")
    if not isinstance(length, int) or isinstance(length, bool):
        raise AssertionError("item header has no integer length: %r" % (ih,))
    payload_area = rest[nl2 + 1:]
    payload = payload_area[:length]
    after = payload_area[length:]
    if len(payload) != length:
        raise AssertionError("item length %d but only %d payload bytes"
                             % (length, len(payload)))
    if after not in (b"", b"\n"):
        raise AssertionError("after the %d-byte payload: %r (length wrong, "
                             "or more than one item)" % (length, after[:200]))
    if b"\n" in payload:
        raise AssertionError("payload contains a newline: length wrong?")
    try:
        event = json.loads(payload.decode("utf-8"))
    except ValueError:
        raise AssertionError("payload of %d bytes is not JSON: %r"
                             % (length, payload[:200]))
    if not isinstance(event, dict):
        raise AssertionError("payload is not an object")
    if event.get("event_id") != eid:
        raise AssertionError("envelope header event_id %s != payload "
                             "event_id %r" % (eid, event.get("event_id")))
    return header, ih, event
