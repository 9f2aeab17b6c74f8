"""Per-thread seccomp filters (docs/seccomp.md): every thread of a running VM
is filtered with no_new_privs; a forbidden syscall ends Ember as Firecracker
does (the log line with the thread's name, seccomp.num_faults flushed, exit
148); --seccomp-filter takes seccompiler's JSON and refuses a bad file
before anything runs; --no-seccomp installs nothing.

The rest of the suite runs with the default filters on: a default list that
misses a call some feature makes fails that feature's test with exit 148.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path

import pytest

from api_client import check_ok
from ember_harness import (BOOT_TIMEOUT, ERROR_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT,
                           describe_returncode, guest_boot_args, hook_done, vm_config)

BAD_SYSCALL_EXIT = 148
# x86_64 numbers, as the log line gives them.
SYS_IOCTL, SYS_SENDTO, SYS_EPOLL_WAIT = 16, 44, 232
KVM_RUN = 0xAE80

def thread_status(pid: int) -> dict[int, dict[str, str]]:
    """Every thread of pid: its name and the Seccomp and NoNewPrivs lines."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = {}
        try:
            text = (task / "status").read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        out[int(task.name)] = fields
    return out


def assert_filtered(proc, statuses, *, skip=lambda name: False):
    bad = {tid: (s["Name"], s.get("Seccomp"), s.get("NoNewPrivs")) for tid, s in statuses.items()
           if not skip(s["Name"]) and (s.get("Seccomp") != "2" or s.get("NoNewPrivs") != "1")}
    assert not bad, proc.report(f"threads without a seccomp filter (Seccomp 2) or no_new_privs: {bad}")


def denying(**forbidden) -> str:
    """A seccompiler file that allows everything but, for each kind named,
    the given rules (each {"syscall": ..., "args": [...]}) -- which trap."""
    never = [{"syscall": "reboot", "comment": "no Ember thread reboots the host"}]
    return json.dumps({
        kind: {"default_action": "allow", "filter_action": "trap",
               "filter": forbidden.get(kind, never)}
        for kind in ("vmm", "api", "vcpu")
    })


def expect_bad_syscall(proc, thread: str, nr: int, metrics: Path | None = None):
    """The log line names the thread (in the prefix) and the syscall, ember
    exits 148, and the last metrics line has seccomp.num_faults = 1."""
    proc.expect_log(rf"\[anonymous-instance:{re.escape(thread)}\] Shutting down VM after "
                    rf"intercepting a bad syscall \({nr}\)\.", STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == BAD_SYSCALL_EXIT, proc.report(f"after a bad syscall, ember {describe_returncode(rc)}; "
                                               f"expected status {BAD_SYSCALL_EXIT}")
    if metrics is not None:
        lines = [json.loads(line) for line in metrics.read_text().splitlines()]
        assert lines, proc.report(f"no metrics line in {metrics}")
        assert lines[-1]["seccomp"]["num_faults"] == 1, proc.report(
            f"the last metrics line does not count the fault: {lines[-1]}")
        assert all(line["seccomp"]["num_faults"] == 0 for line in lines[:-1]), lines


def idle_guest_config(kernel, initramfs, workdir, vcpus=1) -> dict:
    config = vm_config(kernel, initramfs, vcpus=vcpus,
                       boot_args=guest_boot_args("info", end="wait"))
    config["metrics"] = {"metrics_path": str(workdir / "metrics.json")}
    return config


# --- the default filters ---------------------------------------------------------

@pytest.mark.boot
def test_every_thread_of_a_running_vm_is_filtered(ember, kernel_vmlinux, initramfs, workdir):
    proc = ember.start(config=idle_guest_config(kernel_vmlinux, initramfs, workdir, vcpus=2))
    proc.expect(hook_done("info"), BOOT_TIMEOUT)
    statuses = thread_status(proc.proc.pid)
    names = sorted(s["Name"] for s in statuses.values())
    assert {"fc_vcpu 0", "fc_vcpu 1"} <= set(names), proc.report(f"threads: {names}")
    assert_filtered(proc, statuses)
    # SIGTERM is still an orderly exit under the filters.
    proc.proc.send_signal(signal.SIGTERM)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"after SIGTERM, ember {describe_returncode(rc)}")


def test_api_mode_main_thread_is_filtered_and_no_thread_may_gain_privileges(api_ember):
    vm = api_ember.start()
    # The socket accepts as soon as the API thread runs; an answer comes from
    # the VMM thread's loop, which starts after its filter is on.
    check_ok(vm.client().get("/machine-config"), 200, "MachineConfiguration")
    statuses = thread_status(vm.proc.proc.pid)
    main = statuses[vm.proc.proc.pid]
    assert main["Seccomp"] == "2", vm.proc.report(f"the main thread: Seccomp {main['Seccomp']}")
    no_nnp = {s["Name"]: s["NoNewPrivs"] for s in statuses.values() if s["NoNewPrivs"] != "1"}
    assert not no_nnp, vm.proc.report(f"threads without no_new_privs: {no_nnp}")


def test_api_thread_is_filtered(api_ember):
    vm = api_ember.start()
    check_ok(vm.client().get("/machine-config"), 200, "MachineConfiguration")
    assert_filtered(vm.proc, thread_status(vm.proc.proc.pid))


def test_no_seccomp_installs_nothing(api_ember):
    vm = api_ember.start("--no-seccomp")
    statuses = thread_status(vm.proc.proc.pid)
    filtered = {s["Name"]: s["Seccomp"] for s in statuses.values() if s["Seccomp"] != "0"}
    assert not filtered, vm.proc.report(f"--no-seccomp, yet filtered threads: {filtered}")


# --- a forbidden syscall, per thread kind -------------------------------------------

@pytest.mark.boot
def test_vmm_thread_bad_syscall_is_logged_counted_and_exits_148(ember, kernel_vmlinux, initramfs,
                                                                 workdir):
    """The VMM thread's event loop waits in epoll_wait as soon as the VM runs."""
    f = workdir / "filter.json"
    f.write_text(denying(vmm=[{"syscall": "epoll_wait"}]))
    proc = ember.start("--seccomp-filter", str(f),
                       config=idle_guest_config(kernel_vmlinux, initramfs, workdir))
    expect_bad_syscall(proc, "main", SYS_EPOLL_WAIT, workdir / "metrics.json")


@pytest.mark.boot
def test_vcpu_thread_bad_syscall_is_logged_counted_and_exits_148(ember, kernel_vmlinux, initramfs,
                                                                  workdir):
    """A vCPU thread's first KVM_RUN: only that ioctl request is refused."""
    f = workdir / "filter.json"
    f.write_text(denying(vcpu=[{"syscall": "ioctl", "args": [
        {"index": 1, "type": "dword", "op": "eq", "val": KVM_RUN, "comment": "KVM_RUN"}]}]))
    proc = ember.start("--seccomp-filter", str(f),
                       config=idle_guest_config(kernel_vmlinux, initramfs, workdir))
    expect_bad_syscall(proc, "fc_vcpu 0", SYS_IOCTL, workdir / "metrics.json")


def test_api_thread_bad_syscall_is_logged_counted_and_exits_148(api_ember, workdir):
    """The API thread sends its first response: PUT /metrics has opened the
    sink by then (the VMM thread did), so the fault is flushed to it."""
    f = workdir / "filter.json"
    f.write_text(denying(api=[{"syscall": "sendto"}]))
    vm = api_ember.start("--seccomp-filter", str(f))
    metrics = workdir / "metrics.json"
    body = json.dumps({"metrics_path": str(metrics)}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(STEP_TIMEOUT)
        s.connect(str(vm.sock))
        s.sendall(b"PUT /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        # No response comes: the thread that would send it is gone.
        assert s.recv(4096) == b"", vm.proc.report("a response came")
    expect_bad_syscall(vm.proc, "fc_api", SYS_SENDTO, metrics)


# --- bad filter files -------------------------------------------------------------

def filter_with(workdir, mutate) -> Path:
    doc = json.loads(denying())
    mutate(doc)
    f = workdir / "filter.json"
    f.write_text(json.dumps(doc))
    return f


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["vcpu"]["filter"].append({"syscall": "no_such_syscall"}),
     r'vcpu: filter\[1\]: unknown syscall "no_such_syscall"'),
    (lambda d: d.pop("api"), r'missing thread kind "api"'),
    (lambda d: d["vmm"].update(default_action="halt"), r"vmm: bad default_action"),
    (lambda d: d["vmm"]["filter"][0].update(args=[{"index": 9, "type": "dword", "op": "eq", "val": 0}]),
     r'"index" must be an integer from 0 to 5'),
], ids=["unknown-syscall", "missing-kind", "bad-action", "bad-index"])
def test_bad_filter_file_is_one_line_and_nothing_runs(ember, workdir, mutate, message):
    f = filter_with(workdir, mutate)
    sock = workdir / "api.sock"
    proc = ember.start("--api-sock", str(sock), "--seccomp-filter", str(f))
    rc = proc.wait_exit(ERROR_TIMEOUT)
    assert rc == 1, proc.report(f"a bad filter file: ember {describe_returncode(rc)}; expected 1")
    lines = proc.log_lines()
    assert len(lines) == 1, proc.report(f"expected one error line, got {lines}")
    assert re.fullmatch(rf"ember: error: --seccomp-filter {re.escape(str(f))}: .*{message}.*",
                        lines[0]), proc.report(f"error line: {lines[0]!r}")
    assert not sock.exists(), proc.report("the API socket was made before the filter was checked")


def test_no_seccomp_and_seccomp_filter_exclude_each_other(ember, workdir):
    f = filter_with(workdir, lambda d: None)
    proc = ember.start("--no-seccomp", "--seccomp-filter", str(f))
    assert proc.wait_exit(ERROR_TIMEOUT) == 153
    assert proc.log_lines() == ["ember: error: --no-seccomp and --seccomp-filter exclude each other"]


def test_firecrackers_own_filter_file_is_accepted(ember, workdir):
    """Ember reads Firecracker's seccompiler JSON: its own x86_64 file compiles
    (checked with a config file that is then missing, exit 152, not 1)."""
    fc = Path(__file__).resolve().parents[3] / "shared/reference/firecracker-seccomp/" \
        "x86_64-unknown-linux-musl.json"
    if not fc.is_file():  # ../shared is beside CI's clone, not a user's
        pytest.skip(f"Firecracker's filter file is not at {fc} (../shared/reference is absent)")
    proc = ember.start("--seccomp-filter", str(fc), "--no-api", "--config-file",
                       str(workdir / "missing.json"))
    rc = proc.wait_exit(ERROR_TIMEOUT)
    assert rc == 152, proc.report(f"ember {describe_returncode(rc)}: {proc.log_lines()}")
