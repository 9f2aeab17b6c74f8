"""The Firecracker Go SDK's `Machine.Start` with its default options, as
the SDK sends it.

Debian has no package of the SDK (github.com/firecracker-microvm/
firecracker-go-sdk) nor of all it needs, so it cannot be built here
offline. This replays what it does instead, read from its source
(machine.go, handlers.go, drives.go, kernelargs.go, client/models): with a
Config of SocketPath, KernelImagePath, KernelArgs, a root drive from
NewDrivesBuilder and MachineCfg{VcpuCount, MemSizeMib}, and no log, metrics,
network, vsock or MMDS, `NewMachine` + `Start` does:

  exec firecracker --api-sock SOCK --id <random UUID> --no-seccomp
  GET  /machine-config                 (polled every 10 ms until it answers)
  PUT  /machine-config                 {"mem_size_mib":N,"vcpu_count":N}
  GET  /machine-config                 (refreshMachineConfiguration)
  PUT  /boot-source                    {"boot_args":...,"kernel_image_path":...}
  PUT  /drives/root_drive              {"drive_id":"root_drive","is_read_only":false,
                                        "is_root_device":true,"path_on_host":...}
  PUT  /actions                        {"action_type":"InstanceStart"}

Bodies are Go's encoding/json (fields in the models' declaration order,
omitempty fields left out, no spaces) plus the newline json.Encoder ends
with; boot_args are the Config's, re-joined in Go's map order (random).
Headers are what Go's net/http writes for go-openapi's runtime: Host
localhost, User-Agent Go-http-client/1.1, Content-Length, Accept and
Content-Type application/json, Accept-Encoding gzip, on one keep-alive
connection.

The exact command line, --no-seccomp included, is its own test; the
request flow runs with Ember's default filters on.
"""

from __future__ import annotations

import json
import random
import shutil
import uuid

import pytest

from api_client import read_response, swagger
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED, describe_returncode

KERNEL_ARGS = "console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1"


def go_request(method: str, path: str, body: dict | None) -> bytes:
    """One request as Go's net/http writes it for the SDK's client."""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "User-Agent: Go-http-client/1.1"]
    data = b""
    if body is not None:
        data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
        lines.append(f"Content-Length: {len(data)}")
    lines.append("Accept: application/json")
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append("Accept-Encoding: gzip")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def go_boot_args(args: str, seed: int) -> str:
    """kernelargs.go: parsed into a map (a later duplicate key wins) and
    joined back in Go's map order, which is random; seeded here."""
    kv = {}
    for field in args.split():
        key, sep, value = field.partition("=")
        kv[key] = value if sep else None
    keys = list(kv)
    random.Random(seed).shuffle(keys)
    return " ".join(k if kv[k] is None else f"{k}={kv[k]}" for k in keys)


def test_go_sdk_command_line(api_ember):
    """The SDK's exact argv (Seccomp.Enabled defaults to false): ember
    must start and serve its socket."""
    vm = api_ember.start("--id", str(uuid.uuid4()), "--no-seccomp")
    assert vm.proc.proc.poll() is None


@pytest.mark.boot
def test_go_sdk_machine_start(api_ember, workdir, kernel_vmlinux, rootfs_image):
    rootfs = workdir / "rootfs.ext4"
    shutil.copy(rootfs_image, rootfs)
    vm = api_ember.start("--id", str(uuid.uuid4()))  # the SDK's argv less --no-seccomp
    flow = [
        ("GET", "/machine-config", None, 200),
        ("PUT", "/machine-config", {"mem_size_mib": 128, "vcpu_count": 1}, 204),
        ("GET", "/machine-config", None, 200),
        ("PUT", "/boot-source", {"boot_args": go_boot_args(KERNEL_ARGS, 7),
                                 "kernel_image_path": str(kernel_vmlinux)}, 204),
        ("PUT", "/drives/root_drive", {"drive_id": "root_drive", "is_read_only": False,
                                       "is_root_device": True, "path_on_host": str(rootfs)}, 204),
        ("PUT", "/actions", {"action_type": "InstanceStart"}, 204),
    ]
    with vm.raw_socket() as s, s.makefile("rb") as f:
        for method, path, body, status in flow:
            s.sendall(go_request(method, path, body))
            resp = read_response(f, method)
            assert resp.status == status, vm.proc.report(
                f"Go SDK {method} {path}: {resp.describe()}, expected {status}")
            if method == "GET":
                swagger().validate(resp.body, "MachineConfiguration", context=f"GET {path}")
        assert resp.headers.get("Connection", "").lower() != "close", \
            "the SDK's keep-alive connection was closed"
    vm.proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    rc = vm.proc.wait_exit(EXIT_TIMEOUT)  # the rootfs's init reboots
    assert rc == 0, vm.proc.report(f"the guest rebooted: ember {describe_returncode(rc)}")
