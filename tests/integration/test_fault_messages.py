"""Firecracker's fault messages, where its wording is fixed.

Clients and Firecracker's own integration tests match these texts (many with
re.search, so Ember may add detail after them, never change them). Each case
is one request on a fresh `ember --api-sock`; the expected text is
Firecracker's (its src/vmm/src/rpc_interface.rs, vmm_config/*.rs and
api_server/), `exact` when the whole message must be that.
"""

from __future__ import annotations

import pytest

from api_client import check_error, check_ok

NOT_FOUND = "No such file or directory (os error 2)"


def _drive(drive_id, path, **kw):
    return dict({"drive_id": drive_id, "path_on_host": path, "is_root_device": False}, **kw)


# (id, setup requests, the failing request, expected text, exact)
CASES = [
    ("missing-vcpu_count", [], ("PUT", "/machine-config", {"mem_size_mib": 128}),
     "missing field `vcpu_count` at line 1 column 21.", False),
    ("missing-mem_size_mib", [], ("PUT", "/machine-config", {"vcpu_count": 2}),
     "missing field `mem_size_mib` at line 1 column 17.", False),
    ("missing-path_on_host", [], ("PUT", "/drives/d0", {"drive_id": "d0", "is_root_device": False}),
     "An error occurred when deserializing the json body of a request: ", False),
    ("unknown-field", [], ("PATCH", "/drives/d0", {"drive_id": "d0", "path_on_host": "x",
                                                   "is_read_only": True}),
     "unknown field `is_read_only`", False),
    ("vcpu_count-0", [], ("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 128}),
     "The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even "
     "number if SMT is enabled.", False),
    ("mem_size_mib-0", [], ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 0}),
     "The memory size (MiB) is either 0, or not a multiple of the configured page size.", False),
    ("kernel-missing", [], ("PUT", "/boot-source", {"kernel_image_path": "{w}/nope"}),
     f"Boot source error: The kernel file cannot be opened: {NOT_FOUND}", False),
    ("initrd-missing", [], ("PUT", "/boot-source", {"kernel_image_path": "{w}/disk",
                                                    "initrd_path": "{w}/nope"}),
     "Boot source error: The initrd file cannot be opened due to invalid path or invalid "
     f"permissions. {NOT_FOUND}", False),
    ("drive-file-missing", [], ("PUT", "/drives/d0", _drive("d0", "{w}/nope")),
     "Drive config error: Unable to create the virtio block device: Virtio backend error: "
     f"Error manipulating the backing file: {NOT_FOUND} {{w}}/nope", False),
    ("drive-id-mismatch", [], ("PUT", "/drives/d0", _drive("d1", "{w}/disk")),
     "The id from the path does not match the id from the body!", True),
    ("net-id-mismatch", [], ("PUT", "/network-interfaces/eth0",
                             {"iface_id": "eth1", "host_dev_name": "tap0"}),
     "The id from the path does not match the id from the body!", True),
    ("mac-in-use",
     [("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                           "guest_mac": "06:00:00:00:00:01"})],
     ("PUT", "/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap1",
                                          "guest_mac": "06:00:00:00:00:01"}),
     "The MAC address is already in use: 06:00:00:00:00:01", False),
    ("tap-in-use",
     [("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})],
     ("PUT", "/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap0"}),
     "Could not create the network device", False),
    ("mmds-iface-unknown", [], ("PUT", "/mmds/config", {"network_interfaces": ["eth9"]}),
     "The list of network interface IDs provided contains at least one ID that does not "
     "correspond to any existing network interface.", False),
    ("mmds-iface-empty", [], ("PUT", "/mmds/config", {"network_interfaces": []}),
     "The list of network interface IDs that allow forwarding MMDS requests is empty.", False),
    ("unknown-path", [], ("GET", "/nope", None),
     "Invalid request method and/or path: GET nope.", True),
    ("empty-put", [], ("PUT", "/machine-config", None), "Empty PUT request.", True),
    ("get-with-body", [], ("GET", "/machine-config", {}), "GET request cannot have a body.", True),
    ("empty-patch", [], ("PATCH", "/machine-config", None), "Empty PATCH request.", True),
    ("empty-id", [], ("PUT", "/drives/", _drive("", "{w}/disk")), "The ID cannot be empty.", True),
    ("invalid-id", [], ("PUT", "/drives/d-0", _drive("d-0", "{w}/disk")),
     "API Resource IDs can only contain alphanumeric characters and underscores.", False),
    ("unknown-action", [], ("PUT", "/actions", {"action_type": "Bogus"}),
     "unknown variant `Bogus`", False),
    ("start-without-kernel", [], ("PUT", "/actions", {"action_type": "InstanceStart"}),
     "Start microvm error: Cannot start microvm without kernel configuration.", True),
    ("flush-before-start", [], ("PUT", "/actions", {"action_type": "FlushMetrics"}),
     "The requested operation is not supported before starting the microVM.", True),
    ("ctrl-alt-del-before-start", [], ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
     "The requested operation is not supported before starting the microVM.", True),
    ("logger-path", [], ("PUT", "/logger", {"log_path": "{w}/no-dir/log"}),
     f"Logger error: Failed to open target file: {NOT_FOUND}", False),
    ("metrics-path", [], ("PUT", "/metrics", {"metrics_path": "{w}/no-dir/m"}),
     "Metrics error: Cannot initialize the metrics system due to bad user input: ", False),
    ("metrics-twice", [("PUT", "/metrics", {"metrics_path": "{w}/m"})],
     ("PUT", "/metrics", {"metrics_path": "{w}/m"}),
     "Metrics error: Cannot initialize the metrics system due to bad user input: "
     "Reinitialization of metrics not allowed.", True),
]


def _fill(value, workdir):
    if isinstance(value, str):
        return value.replace("{w}", str(workdir))
    if isinstance(value, dict):
        return {k: _fill(v, workdir) for k, v in value.items()}
    return value


@pytest.mark.parametrize("setup,request_,expected,exact",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_firecrackers_words(api_vm, workdir, setup, request_, expected, exact):
    (workdir / "disk").write_bytes(b"\0" * 4096)
    c = api_vm.client()
    for method, path, body in setup:
        check_ok(c.request(method, path, _fill(body, workdir)), 204, None, f"{method} {path}")
    method, path, body = request_
    msg = check_error(c.request(method, path, _fill(body, workdir)), context=f"{method} {path}")
    expected = _fill(expected, workdir)
    if exact:
        assert msg == expected, f"{method} {path}: {msg!r}, Firecracker says {expected!r}"
    else:
        assert expected in msg, f"{method} {path}: {msg!r} lacks Firecracker's {expected!r}"


def test_multi_queue_tap(api_vm, test_netns):
    """Firecracker's test_net.py case: a multi-queue TAP cannot be opened as
    a single-queue one; the message is Firecracker's, word for word."""
    test_netns.ip("tuntap", "add", "name", "mqtap0", "mode", "tap", "multi_queue")
    try:
        msg = check_error(api_vm.client().put("/network-interfaces/eth0", {
            "iface_id": "eth0", "host_dev_name": "mqtap0", "guest_mac": "AA:FC:00:00:00:01"}))
    finally:
        test_netns.ip("link", "del", "mqtap0")
    expected = ("Could not create the network device: Open tap device failed: Error while "
                "creating ifreq structure: Invalid argument (os error 22). Invalid TUN/TAP "
                "Backend provided by mqtap0. Check our documentation on setting up the network "
                "devices.")
    assert expected in msg, f"{msg!r} lacks Firecracker's {expected!r}"
