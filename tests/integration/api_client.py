"""A small client for Ember's Firecracker-compatible REST API, and the checks
every API test applies to a response.

- ApiClient: HTTP/1.1 over the Unix socket with the standard library
  (http.client), one persistent connection reused for every request
  (keep-alive); each request returns an ApiResponse (status, parsed JSON body
  or None, headers, raw body).
- read_response(): parses one response from a raw socket's file, for the
  tests that write bytes by hand (pipelining, broken clients).
- Swagger: Firecracker's swagger 2.0 document (its `definitions`), used to
  validate every response body with jsonschema. `$ref: "#/definitions/X"`
  resolves against the whole document.
- ApiVm: one `ember --api-sock` process (the harness's EmberProcess) plus its
  socket path; conftest.py's `api_ember` fixture starts them.

Needs Debian's python3-jsonschema and python3-yaml.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from ember_harness import ERROR_TIMEOUT, _SCALE

try:
    import jsonschema
    import yaml
except ImportError as e:  # name the Debian package rather than a traceback
    raise ImportError(f"{e}: the API tests need Debian's python3-jsonschema and python3-yaml") from e

# Failure bounds (seconds), scaled like the harness's.
REQUEST_TIMEOUT = 30 * _SCALE   # one API request -> its response
SOCKET_TIMEOUT = ERROR_TIMEOUT  # ember started -> its API socket accepts connections

JSON_TYPES = ("application/json",)


# --- responses -------------------------------------------------------------------

class ApiResponse(NamedTuple):
    status: int
    body: Any             # parsed JSON, or None when the body is empty or not JSON
    headers: Any          # http.client.HTTPMessage (case-insensitive .get())
    raw: bytes            # the body as received

    def describe(self) -> str:
        text = self.raw.decode("utf-8", "replace")
        if len(text) > 500:
            text = text[:500] + f"... ({len(self.raw)} bytes)"
        return f"HTTP {self.status}, body {text!r}"


def _parse_body(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def read_response(fp, method: str = "GET") -> ApiResponse:
    """One HTTP/1.1 response from a binary file (socket.makefile("rb")).

    Reads exactly one response, so several pipelined responses can be read in
    turn from the same file. Supports Content-Length and chunked bodies.
    """
    status_line = fp.readline(65537)
    if not status_line:
        raise ConnectionError("the server closed the connection before a response")
    parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    status = int(parts[1])
    headers = http.client.parse_headers(fp)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        raw = b""
    elif (headers.get("Transfer-Encoding") or "").lower() == "chunked":
        chunks = []
        while True:
            size = int(fp.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while fp.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(fp.read(size))
            fp.readline()
        raw = b"".join(chunks)
    elif headers.get("Content-Length") is not None:
        length = int(headers["Content-Length"])
        raw = fp.read(length)
        if len(raw) != length:
            raise ConnectionError(f"body cut short: {len(raw)} of {length} bytes")
    else:
        raw = fp.read()  # delimited by the connection's end
    return ApiResponse(status, _parse_body(raw), headers, raw)


def raw_request(method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (Host and Content-Length added)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    all_headers = dict(headers or {})
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
        all_headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# --- the client ------------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's connection over an AF_UNIX stream socket."""

    def __init__(self, path: str | os.PathLike, timeout: float = REQUEST_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = os.fspath(path)
        self.connects = 0  # how many sockets this connection has opened

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.connects += 1


def encode_body(body) -> bytes | None:
    """dict/list -> JSON; str -> UTF-8; bytes as they are; None -> no body."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class ApiClient:
    """Requests on one persistent connection (HTTP/1.1 keep-alive).

    http.client reopens the connection by itself if the server closed it;
    `connects` counts the sockets opened, so a test can check that they were
    all one.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = REQUEST_TIMEOUT, on_failure=None):
        self.path = os.fspath(path)
        self.conn = UnixHTTPConnection(self.path, timeout)
        # Called with a headline when a request gets no response (refused,
        # reset, timed out): ApiVm makes it fail the test with ember's report.
        self.on_failure = on_failure

    @property
    def connects(self) -> int:
        return self.conn.connects

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                timeout: float | None = None) -> ApiResponse:
        data = encode_body(body)
        all_headers = {"Accept": "application/json"}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        if timeout is not None:
            self.conn.timeout = timeout
            if self.conn.sock is not None:
                self.conn.sock.settimeout(timeout)
        error = None
        try:
            self.conn.request(method, path, body=data, headers=all_headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            if self.on_failure is None:
                raise
            error = e
        finally:
            if timeout is not None:
                self.conn.timeout = REQUEST_TIMEOUT
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(REQUEST_TIMEOUT)
        if error is not None:  # fail outside the except: no chained traceback
            self.on_failure(f"{method} {path}: no response ({error!r})")
            raise error
        return ApiResponse(resp.status, _parse_body(raw), resp.headers, raw)

    def get(self, path: str, **kw) -> ApiResponse:
        return self.request("GET", path, **kw)

    def put(self, path: str, body=None, **kw) -> ApiResponse:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body=None, **kw) -> ApiResponse:
        return self.request("PATCH", path, body, **kw)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the swagger -----------------------------------------------------------------

def default_spec_path() -> Path:
    """EMBER_API_SPEC, else shared/reference/firecracker-api.yaml beside the repo."""
    env = os.environ.get("EMBER_API_SPEC")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "reference" / "firecracker-api.yaml"


class Swagger:
    """Firecracker's swagger document; validates JSON against its definitions.

    strict=True (the default) also refuses properties a definition does not
    declare (every object definition with `properties` gets
    `additionalProperties: false`): Ember must not answer with fields that
    Firecracker's clients do not know, such as a misspelt one.
    """

    BASE_URI = "urn:ember:firecracker-api"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        if not isinstance(self.doc, dict) or not isinstance(self.doc.get("definitions"), dict):
            raise ValueError(f"{self.path}: no `definitions` in this swagger document")
        self.definitions = self.doc["definitions"]
        self._validators: dict[tuple[str, bool], Any] = {}
        strict_doc = copy.deepcopy(self.doc)
        for schema in strict_doc["definitions"].values():
            _close_objects(schema)
        self._docs = {False: self.doc, True: strict_doc}

    def paths(self) -> dict:
        return self.doc.get("paths", {})

    def _validator(self, name: str, strict: bool):
        key = (name, strict)
        if key not in self._validators:
            if name not in self.definitions:
                raise KeyError(f"{self.path}: no definition {name!r}")
            doc = self._docs[strict]
            cls = jsonschema.Draft4Validator  # swagger 2.0 schemas are draft-4 based
            try:  # jsonschema >= 4.18: the `referencing` library
                from referencing import Registry, Resource
                from referencing.jsonschema import DRAFT4
            except ImportError:  # older jsonschema (Debian 12 has 4.10): RefResolver
                # The document has no id: its base URI is "", and every
                # "#/definitions/X" (ours and those inside it) resolves in it.
                resolver = jsonschema.RefResolver.from_schema(doc, id_of=lambda _: "")
                validator = cls({"$ref": "#/definitions/" + name}, resolver=resolver)
            else:
                registry = Registry().with_resource(
                    self.BASE_URI, Resource(contents=doc, specification=DRAFT4))
                validator = cls({"$ref": f"{self.BASE_URI}#/definitions/{name}"},
                                registry=registry)
            self._validators[key] = validator
        return self._validators[key]

    def errors(self, instance, name: str, strict: bool = True) -> list[str]:
        """Messages for every way instance breaks definition name (empty: valid).

        A null member is validated as an absent one: Firecracker serialises its
        unset Option fields as null (GET /vm/config shows "balloon": null,
        "partuuid": null, ...) and reads null back as absent, while its swagger
        types declare no null."""
        validator = self._validator(name, strict)
        instance = _drop_nulls(instance)
        out = []
        for err in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path]):
            where = "/".join(str(p) for p in err.path) or "(top level)"
            out.append(f"{where}: {err.message}")
        return out

    def validate(self, instance, name: str, strict: bool = True, context: str = ""):
        problems = self.errors(instance, name, strict)
        assert not problems, (f"{context}: " if context else "") + \
            f"body does not match the swagger's {name}: " + "; ".join(problems) + \
            f"\nbody: {json.dumps(instance)[:1000]}"


def _drop_nulls(value):
    """value without its null object members, at every depth."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _close_objects(schema):
    """additionalProperties: false on every object schema that lists properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema \
                and "$ref" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _close_objects(value)


_swagger: Swagger | None = None


def swagger() -> Swagger:
    """The swagger document, loaded once; a missing file fails the test."""
    global _swagger
    if _swagger is None:
        path = default_spec_path()
        if not path.is_file():
            pytest.fail(f"Firecracker's swagger is not at {path}: set EMBER_API_SPEC to "
                        "firecracker-api.yaml", pytrace=False)
        _swagger = Swagger(path)
    return _swagger


# --- checks on responses -----------------------------------------------------------

def check_ok(resp: ApiResponse, status: int, definition: str | None = None,
             context: str = "") -> Any:
    """resp has status; a body validates against definition (204: no body)."""
    where = f"{context}: " if context else ""
    assert resp.status == status, f"{where}expected HTTP {status}, got {resp.describe()}"
    if status == 204:
        assert resp.raw == b"", f"{where}HTTP 204 with a body: {resp.describe()}"
        return None
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    assert ctype in JSON_TYPES, f"{where}Content-Type {ctype!r}, expected application/json"
    assert resp.body is not None, f"{where}the body is not JSON: {resp.describe()}"
    if definition:
        swagger().validate(resp.body, definition, context=context)
    return resp.body


def check_error(resp: ApiResponse, *keywords: str, context: str = "") -> str:
    """resp is Firecracker's error: HTTP 400, an Error body with a non-empty
    fault_message, which contains every keyword (any case). Returns the message."""
    where = f"{context}: " if context else ""
    assert resp.status == 400, f"{where}expected HTTP 400, got {resp.describe()}"
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    assert ctype in JSON_TYPES, \
        f"{where}error with Content-Type {ctype!r}, expected application/json: {resp.describe()}"
    assert isinstance(resp.body, dict), f"{where}error body is not a JSON object: {resp.describe()}"
    swagger().validate(resp.body, "Error", context=context)
    message = resp.body.get("fault_message")
    assert isinstance(message, str) and message.strip(), \
        f"{where}no non-empty fault_message: {resp.describe()}"
    for k in keywords:
        assert k.lower() in message.lower(), \
            f"{where}fault_message does not mention {k!r}: {message!r}"
    return message


# --- one ember serving the API --------------------------------------------------------

class ApiVm:
    """An `ember --api-sock` process and its socket."""

    def __init__(self, proc, sock: Path):
        self.proc = proc       # ember_harness.EmberProcess
        self.sock = Path(sock)
        self._clients: list[ApiClient] = []

    def client(self, timeout: float = REQUEST_TIMEOUT) -> ApiClient:
        c = ApiClient(self.sock, timeout, on_failure=self.proc.fail)
        self._clients.append(c)
        return c

    def raw_socket(self, timeout: float = REQUEST_TIMEOUT) -> socket.socket:
        """A connected AF_UNIX socket, for writing requests byte by byte."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.sock))
        except OSError as e:
            s.close()
            error = e
        else:
            return s
        self.proc.fail(f"cannot connect to {self.sock}: {error!r}")

    def wait_ready(self, timeout: float = SOCKET_TIMEOUT):
        """Poll connect() until the socket accepts; fail at once if ember exits."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.proc.poll() is not None:
                self.proc.wait_exit(10)
                self.proc.fail(f"ember exited before its API socket {self.sock} accepted a connection")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(1)
                s.connect(str(self.sock))
                return
            except OSError as e:
                last = e
            finally:
                s.close()
            if time.monotonic() >= deadline:
                self.proc.fail(f"the API socket {self.sock} did not accept a connection within "
                               f"{timeout:.0f} s (last error: {last!r})")
            time.sleep(0.01)

    def close_clients(self):
        for c in self._clients:
            c.close()


class ApiLauncher:
    """Starts `ember --api-sock <workdir>/<name>` through the harness."""

    def __init__(self, launcher, workdir: Path):
        self.launcher = launcher   # ember_harness.EmberLauncher
        self.workdir = Path(workdir)
        self._vms: list[ApiVm] = []

    def start(self, *args: str, sock: str | os.PathLike | None = None, wait: bool = True) -> ApiVm:
        path = Path(sock) if sock is not None else self.workdir / "api.sock"
        if len(os.fsencode(path)) >= 108:
            pytest.fail(f"socket path too long for sun_path: {path}", pytrace=False)
        proc = self.launcher.start("--api-sock", str(path), *args)
        vm = ApiVm(proc, path)
        self._vms.append(vm)
        if wait:
            vm.wait_ready()
        return vm

    def close(self):
        for vm in self._vms:
            vm.close_clients()
