"""Ember's own HTTP server for the API (src/api/): issue 16's limits and the
HTTP features Firecracker's clients use (Expect: 100-continue, pipelining,
oversized bodies). Runs a real `ember --api-sock`; no guest.

The limits are api/server.h's API_DEFAULT_LIMITS; the idle timeout (120 s)
is exercised by tests/unit/test_api_server.c with short limits instead.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

from api_client import REQUEST_TIMEOUT, check_error, check_ok, raw_request, read_response
from ember_harness import _SCALE
from test_api import DEFAULT_MACHINE, configure, machine_config, padded_json, vm_config

MAX_CONNECTIONS = 64       # api/server.h
REQUEST_TIMEOUT_S = 5.0    # api/server.h: a request's first byte -> complete
# How late past REQUEST_TIMEOUT_S the drop may come on a busy test host.
SLACK = 5.0 * _SCALE


def put_machine(vcpus: int, mem: int) -> bytes:
    return raw_request("PUT", "/machine-config",
                       json.dumps({"vcpu_count": vcpus, "mem_size_mib": mem}).encode())


def closed_by_server(s: socket.socket, timeout: float) -> bytes:
    """Everything the server still sends until it closes the connection
    (within timeout, else the test fails)."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


# --- a slow client ----------------------------------------------------------------------

def test_slow_client_does_not_delay_another(api_vm):
    """A client that sends half a request and stops is dropped after the
    request timeout, with a 408; another client is served at once meanwhile."""
    with api_vm.raw_socket() as slow:
        slow.sendall(put_machine(7, 700)[:40])
        t0 = time.monotonic()
        c = api_vm.client()
        for _ in range(20):
            assert machine_config(c) == DEFAULT_MACHINE
        assert time.monotonic() - t0 < REQUEST_TIMEOUT_S / 2, \
            "another client waited on the slow one"
        rest = closed_by_server(slow, REQUEST_TIMEOUT_S + SLACK)
        waited = time.monotonic() - t0
    assert waited >= REQUEST_TIMEOUT_S - 0.5, f"dropped after {waited:.1f} s, before the timeout"
    assert rest.startswith(b"HTTP/1.1 408 "), rest[:200]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert "timed out" in body["fault_message"], body
    assert machine_config(c) == DEFAULT_MACHINE  # the half PUT changed nothing


def test_trickling_client_is_dropped_after_the_request_timeout(api_vm):
    """A byte at a time keeps no request alive past the bound (slowloris)."""
    req = put_machine(3, 300)
    with api_vm.raw_socket() as s:
        t0 = time.monotonic()
        dropped = None
        for i in range(len(req) - 1):
            try:
                s.sendall(req[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                dropped = time.monotonic() - t0
                break
            time.sleep(0.25)  # pacing the client, not waiting for ember
            if time.monotonic() - t0 > REQUEST_TIMEOUT_S + SLACK:
                break
        if dropped is None:
            closed_by_server(s, SLACK)
            dropped = time.monotonic() - t0
    assert dropped <= REQUEST_TIMEOUT_S + SLACK, f"still open after {dropped:.1f} s"
    assert machine_config(api_vm.client()) == DEFAULT_MACHINE


# --- the connection limit ---------------------------------------------------------------

def test_connection_over_the_limit_gets_a_503(api_vm):
    """With every slot holding a request under way, a new connection gets a
    503 fault and is closed; once they go, new clients are served again."""
    busy = []
    try:
        # A round trip first, so that ember has seen the harness's probe
        # connection (made while waiting for the socket) go.
        first = api_vm.raw_socket()
        busy.append(first)
        with first.makefile("rb") as f:
            for _ in range(2):
                first.sendall(raw_request("GET", "/"))
                check_ok(read_response(f), 200, "InstanceInfo")
        for i in range(MAX_CONNECTIONS):
            s = first if i == 0 else api_vm.raw_socket()
            if i:
                busy.append(s)
            s.sendall(b"GET / HTTP/1.1\r\n")  # a head that never ends
        with api_vm.raw_socket() as extra, extra.makefile("rb") as f:
            resp = read_response(f)
            assert resp.status == 503, resp.describe()
            assert "Too many open connections" in resp.body["fault_message"], resp.describe()
            assert f.read() == b"", "the refused connection stays open"
    finally:
        for s in busy:
            s.close()
    # The slots come back as ember sees them closed.
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while True:
        with api_vm.raw_socket() as s, s.makefile("rb") as f:
            s.sendall(raw_request("GET", "/"))
            resp = read_response(f)
        if resp.status == 200 or time.monotonic() > deadline:
            break
    check_ok(resp, 200, "InstanceInfo", "GET / once the busy clients left")


def test_idle_connections_make_room_for_a_new_one(api_vm):
    """At the limit with idle keep-alive connections, a new client is served:
    the longest-idle connection is closed for it."""
    idle = []
    try:
        for i in range(MAX_CONNECTIONS):
            c = api_vm.client()
            assert machine_config(c) == DEFAULT_MACHINE, f"client {i}"
            idle.append(c)
        with api_vm.raw_socket() as s, s.makefile("rb") as f:
            s.sendall(raw_request("GET", "/version"))
            check_ok(read_response(f), 200, "FirecrackerVersion", "a client past the limit")
        # The first (longest-idle) client's socket was closed by ember.
        assert closed_by_server(idle[0].conn.sock, REQUEST_TIMEOUT) == b""
        # The most recent ones were kept.
        assert idle[-1].connects == 1
        assert machine_config(idle[-1]) == DEFAULT_MACHINE and idle[-1].connects == 1
    finally:
        for c in idle:
            c.close()


# --- HTTP features ----------------------------------------------------------------------

def test_expect_100_continue(api_vm):
    """The head alone gets 100 Continue; the body then gets the answer."""
    body = padded_json({"vcpu_count": 5, "mem_size_mib": 500}, 2000)
    head = raw_request("PUT", "/machine-config", body,
                       headers={"Expect": "100-continue"})[:-len(body)]
    with api_vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(head)
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(body)
        check_ok(read_response(f, "PUT"), 204, None, "PUT after 100 Continue")
        s.sendall(raw_request("GET", "/machine-config"))
        assert check_ok(read_response(f), 200, "MachineConfiguration")["vcpu_count"] == 5


def test_expect_100_continue_over_the_limit(api_vm):
    """Too large: the fault instead of 100 Continue, and the connection closes
    (the client may or may not send the body)."""
    body = padded_json({"vcpu_count": 5, "mem_size_mib": 500}, 60000)
    head = raw_request("PUT", "/machine-config", body,
                       headers={"Expect": "100-continue"})[:-len(body)]
    with api_vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(head)
        check_error(read_response(f, "PUT"), "larger than the limit", "51200")
        assert f.read() == b""
    assert machine_config(api_vm.client()) == DEFAULT_MACHINE


def test_curl_sends_a_large_body_with_expect(api_vm, workdir):
    """curl adds Expect: 100-continue to bodies over 1 KiB (1 MiB in newer
    versions; the header is forced here): the PUT goes through."""
    body = padded_json({"vcpu_count": 9, "mem_size_mib": 900}, 40000)
    (workdir / "body.json").write_bytes(body)
    out = subprocess.run(
        ["/usr/bin/curl", "-sS", "--unix-socket", str(api_vm.sock), "-X", "PUT",
         "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
         "--data-binary", f"@{workdir / 'body.json'}", "-o", "/dev/null",
         "-w", "%{http_code}", "http://localhost/machine-config"],
        capture_output=True, text=True, timeout=REQUEST_TIMEOUT, check=False)
    assert out.stdout == "204", (out.stdout, out.stderr)
    assert machine_config(api_vm.client())["vcpu_count"] == 9


def test_pipelined_batch_around_an_oversized_body(api_ember):
    """An oversized body is skipped exactly: the requests after it in the
    same write are answered, in order."""
    vm = api_ember.start("--http-api-max-payload-size", "1000")
    big = padded_json({"vcpu_count": 4, "mem_size_mib": 400}, 5000)
    batch = (put_machine(2, 200) + raw_request("PUT", "/machine-config", big) +
             raw_request("GET", "/machine-config") + put_machine(3, 300) +
             raw_request("GET", "/machine-config"))
    with vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(batch)
        check_ok(read_response(f, "PUT"), 204, None, "PUT before the oversized one")
        check_error(read_response(f, "PUT"), "larger than the limit", "5000", "1000")
        assert check_ok(read_response(f), 200, "MachineConfiguration")["vcpu_count"] == 2
        check_ok(read_response(f, "PUT"), 204, None, "PUT after the oversized one")
        assert check_ok(read_response(f), 200, "MachineConfiguration")["vcpu_count"] == 3


def test_pipelined_requests_split_anywhere(api_vm):
    """A batch of pipelined requests sent in pieces of every size up to 17
    bytes, cutting heads and bodies anywhere, gets every answer in order."""
    reqs = [put_machine(i % 8 + 1, 128 + i) if i % 2 else raw_request("GET", "/machine-config")
            for i in range(12)]
    data = b"".join(reqs)
    for step in (1, 2, 5, 17):
        with api_vm.raw_socket() as s, s.makefile("rb") as f:
            results = []

            def reader():
                for i in range(len(reqs)):
                    results.append(read_response(f, "PUT" if i % 2 else "GET"))
            t = threading.Thread(target=reader)
            t.start()
            for i in range(0, len(data), step):
                s.sendall(data[i:i + step])
            t.join(REQUEST_TIMEOUT)
            assert not t.is_alive() and len(results) == len(reqs), f"step {step}: {len(results)}"
            for i, r in enumerate(results):
                if i % 2:
                    check_ok(r, 204, None, f"step {step}, request {i}")
                else:
                    got = check_ok(r, 200, "MachineConfiguration", f"step {step}, request {i}")
                    if i:
                        assert got["mem_size_mib"] == 128 + i - 1, (step, i, got)


def test_http10_request_is_answered_and_closed(api_vm, workdir):
    before = configure(api_vm.client(), workdir)
    with api_vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(b"GET /machine-config HTTP/1.0\r\n\r\n")
        check_ok(read_response(f), 200, "MachineConfiguration", "HTTP/1.0 GET")
        assert f.read() == b""
    assert vm_config(api_vm.client()) == before
