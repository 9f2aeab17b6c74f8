"""Every curl sequence of Firecracker's own docs that applies to Ember, run
as written against `ember --api-sock`.

The docs are Firecracker's (../shared/reference/firecracker-docs, or
EMBER_FC_DOCS); where they are absent (a user's clone) these tests are
skipped with the reason. Each doc's shell code blocks are reduced to their
variable assignments and their API curl commands (`--unix-socket`), in
order, and run by bash with `curl` and `sudo` as shims: the shim calls the
real curl, records each answer, and the socket path of the docs is
replaced by this test's. Everything else (downloads, ssh, iptables) is not
run. Relative paths resolve in ember's working directory, as the docs
assume for Firecracker's.

The expected statuses are Firecracker's answers to the same commands,
literally: where a doc itself is broken (unescaped quotes, a missing comma,
a trailing comma, a variable inside single quotes) Firecracker answers 400
too, and so must Ember. Docs for features Ember does not have (pmem,
memory hotplug, snapshots) do not apply; test_api.py checks that their
routes are refused by name. ballooning.md has `...` for every value its
commands send (nothing to run as written); test_balloon.py covers its API.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from api_client import REQUEST_TIMEOUT
from ember_harness import (BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED, describe_returncode,
                           guest_boot_args)

REPO = Path(__file__).resolve().parents[2]
FC_SOCKET = "/tmp/firecracker.socket"

SHIMS = r"""
n=0
curl() {
	local args=() a
	for a in "$@"; do case $a in -i|-s) ;; *) args+=("$a") ;; esac; done
	n=$((n + 1))
	printf '%s\n' "${args[@]}" >"$OUT/$n.argv"
	/usr/bin/curl -sS --max-time "$CURL_MAX_TIME" -o "$OUT/$n.body" -w '%{http_code}' \
		"${args[@]}" >"$OUT/$n.status" 2>"$OUT/$n.err"
}
sudo() { "$@"; }
"""


def docs_dir() -> Path:
    env = os.environ.get("EMBER_FC_DOCS")
    path = Path(env) if env else REPO.parent / "shared" / "reference" / "firecracker-docs"
    if not path.is_dir():
        pytest.skip(f"Firecracker's docs are not at {path} (set EMBER_FC_DOCS to "
                    "firecracker-docs/ to run their curl sequences)")
    return path


def api_script(doc: Path, replace: dict | None = None) -> str:
    """The doc's assignments and API curl commands, in order, as bash."""
    text = doc.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{doc.name} no longer has {old!r}"
        text = text.replace(old, new)
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        lines = block.replace("\\\n", " ").splitlines()  # continuation lines joined
        i = 0
        while i < len(lines):
            line = lines[i]
            cmd = line.strip()
            i += 1
            # Top-level assignments only: an indented one is inside an `if`
            # (the guide's aarch64 branch), which this does not run.
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line) and "curl" not in cmd and \
                    "wget" not in cmd:
                out.append(cmd)
            elif re.match(r"^(sudo )?curl ", cmd):
                # A quoted body may span lines: take lines until the quotes close.
                while not _complete(cmd) and i < len(lines):
                    cmd += "\n" + lines[i]
                    i += 1
                if "--unix-socket" in cmd:
                    out.append(cmd)
    return "\n".join(out).replace(FC_SOCKET, "${socket}")


def _complete(cmd: str) -> bool:
    try:
        shlex.split(cmd)
        return True
    except ValueError:  # "No closing quotation"
        return False


class DocRun:
    """One doc's API commands run against one ember."""

    def __init__(self, doc: str, vm, workdir: Path, extra_env: dict | None = None,
                 replace: dict | None = None):
        self.path = docs_dir() / doc
        assert self.path.is_file(), f"{self.path} is missing from Firecracker's docs"
        self.vm, self.workdir = vm, workdir
        out = workdir / f"curl-{doc.replace('/', '-')}"
        out.mkdir()
        script = SHIMS + api_script(self.path, replace)
        env = dict(os.environ, OUT=str(out), socket=str(vm.sock),
                   CURL_MAX_TIME=str(int(REQUEST_TIMEOUT)), **(extra_env or {}))
        run = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True,
                             text=True, timeout=30 * REQUEST_TIMEOUT)
        assert run.returncode == 0, vm.proc.report(f"{doc}'s commands: {run.stderr}")
        self.answers = []
        for i in range(1, len(list(out.glob("*.argv"))) + 1):
            argv = (out / f"{i}.argv").read_text().splitlines()
            method = argv[argv.index("-X") + 1] if "-X" in argv else \
                ("PUT" if any(a in argv for a in ("-d", "--data")) else "GET")
            url = next(a for a in argv if a.startswith("http://localhost"))
            status = (out / f"{i}.status").read_text()
            err = (out / f"{i}.err").read_text().strip()
            assert status.isdigit() and status != "000", \
                vm.proc.report(f"{doc}: curl {method} {url} got no answer: {err}")
            body = (out / f"{i}.body").read_text() if (out / f"{i}.body").exists() else ""
            self.answers.append((method, url[len("http://localhost"):], int(status), body))

    def check(self, expected: list[tuple[str, str, int]]):
        got = [(m, p, s) for m, p, s, _ in self.answers]
        assert got == expected, self.vm.proc.report(
            f"{self.path.name}: answers differ from Firecracker's\n"
            + "\n".join(f"  {m} {p} -> {s} {b[:200]}" for m, p, s, b in self.answers)
            + "\nexpected:\n" + "\n".join(f"  {m} {p} -> {s}" for m, p, s in expected))


# --- docs with no guest ------------------------------------------------------------

def test_network_setup_md(api_vm, workdir):
    DocRun("network-setup.md", api_vm, workdir).check(
        [("PUT", "/network-interfaces/my_network0", 204)])


def test_logger_md(api_vm, workdir):
    # The doc's body is in double quotes with unescaped inner quotes: the
    # shell sends {log_path: logs.fifo, ...}, not JSON. Firecracker: 400.
    DocRun("logger.md", api_vm, workdir).check([("PUT", "/logger", 400)])


def test_metrics_md(api_vm, workdir):
    # Two alternative examples run in a row: the second is a second setup,
    # which Firecracker refuses ("Reinitialization of metrics not allowed.").
    os.mkfifo(workdir / "metrics.fifo")
    run = DocRun("metrics.md", api_vm, workdir)
    run.check([("PUT", "/metrics", 204), ("PUT", "/metrics", 400)])
    assert "Reinitialization of metrics not allowed." in run.answers[1][3], run.answers[1]


def test_initrd_md(api_vm, workdir, kernel_vmlinux, initramfs):
    # Its placeholders /path/to/kernel and /path/to/initrd.cpio, made real.
    DocRun("initrd.md", api_vm, workdir,
           replace={"/path/to/kernel": str(kernel_vmlinux),
                    "/path/to/initrd.cpio": str(initramfs)}).check([("PUT", "/boot-source", 204)])


def test_block_caching_and_io_engine_md(api_vm, workdir):
    disk = workdir / "disk.ext4"
    disk.write_bytes(b"\0" * (1 << 20))
    env = {"drive_path": str(disk)}
    DocRun("api_requests/block-caching.md", api_vm, workdir, env).check(
        [("PUT", "/drives/dummy", 204)])
    DocRun("api_requests/block-io-engine.md", api_vm, workdir, env).check(
        [("PUT", "/drives/rootfs", 204)])
    drives = {d["drive_id"]: d for d in
              json.loads(api_vm.client().get("/vm/config").raw)["drives"]}
    assert drives["dummy"]["cache_type"] == "Writeback", drives
    assert drives["rootfs"]["io_engine"] == "Sync" and drives["rootfs"]["is_root_device"], drives


def test_patch_block_md(api_vm, workdir):
    # Its first PUT lacks a comma after "is_read_only": true (not JSON: 400);
    # so the PATCHes name a drive that does not exist, before start: 400.
    for name in ("ro", "updated"):
        (workdir / name).write_bytes(b"\0" * (1 << 20))
    env = {"ro_drive_path": str(workdir / "ro"), "updated_ro_drive_path": str(workdir / "updated"),
           "new_size": "1"}
    DocRun("api_requests/patch-block.md", api_vm, workdir, env).check(
        [("PUT", "/drives/scratch", 400), ("PATCH", "/drives/scratch", 400),
         ("PATCH", "/drives/scratch", 400)])


def test_mmds_user_guide_md(api_vm, workdir):
    # '${MMDS_NET_IF}' in single quotes stays literal: an invalid resource ID
    # in the path, then an interface that does not exist (400 both, as
    # Firecracker). The PATCH body has a trailing comma: not JSON, 400.
    run = DocRun("mmds/mmds-user-guide.md", api_vm, workdir)
    run.check([("PUT", "/network-interfaces/${MMDS_NET_IF}", 400),
               ("PUT", "/mmds/config", 400), ("PUT", "/mmds/config", 400),
               ("PUT", "/mmds/config", 400), ("PUT", "/mmds", 204), ("PATCH", "/mmds", 400),
               ("GET", "/mmds", 200)])
    put = json.loads(re.search(r"-d '(.*?)'", (docs_dir() / "mmds/mmds-user-guide.md")
                               .read_text().split('-X PUT "http://localhost/mmds"')[1],
                               re.S).group(1))
    assert json.loads(run.answers[-1][3]) == put, run.answers[-1]


def test_vsock_md(api_vm, workdir):
    # The vsock device (uds_path ./v.sock, relative to ember's directory),
    # then the doc's snapshot load: no such snapshot (400, as Firecracker
    # without the files).
    DocRun("vsock.md", api_vm, workdir).check(
        [("PUT", "/vsock", 204), ("PUT", "/snapshot/load", 400)])
    assert json.loads(api_vm.client().get("/vm/config").raw)["vsock"]["guest_cid"] == 3


# --- docs that start a guest ----------------------------------------------------------

@pytest.mark.boot
def test_getting_started_md(api_vm, workdir, kernel_vmlinux, rootfs_image):
    """The API half of the guide: logger, boot source, rootfs, network,
    InstanceStart; the kernel and rootfs found by its own `ls vmlinux*` and
    `ls *.ext4` in ember's working directory. (The guide starts Firecracker
    with --enable-pci, which Ember refuses with the reason: test_cli_flags.)
    Its boot args have no ember.hook: the rootfs's init starts and reboots."""
    os.symlink(kernel_vmlinux, workdir / "vmlinux-6.1")
    shutil.copy(rootfs_image, workdir / "ubuntu-24.04.ext4")
    # `quiet loglevel=1` added, as every test boot has: without it nested
    # guests in the test host sometimes stall (DEVELOPERS.md).
    args = 'KERNEL_BOOT_ARGS="console=ttyS0 reboot=k panic=1"'
    run = DocRun("getting-started.md", api_vm, workdir,
                 replace={args: args[:-1] + ' quiet loglevel=1"'})
    run.check([("PUT", "/logger", 204), ("PUT", "/boot-source", 204),
               ("PUT", "/drives/rootfs", 204), ("PUT", "/network-interfaces/net1", 204),
               ("PUT", "/actions", 204)])
    api_vm.proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    rc = api_vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, api_vm.proc.report(f"the guest rebooted: ember {describe_returncode(rc)}")
    assert "[DEBUG]" in (workdir / "firecracker.log").read_text(), "the guide's logger is not on"


@pytest.mark.boot
def test_actions_md(api_vm, workdir, kernel_vmlinux, initramfs):
    """InstanceStart, FlushMetrics and SendCtrlAltDel as the doc sends them,
    to a microVM whose guest is already up: the doc's InstanceStart is then
    refused (already started), and the waiting guest reboots on
    Ctrl+Alt+Del. (Sent right after a fresh InstanceStart, the key can reach
    the i8042 before the guest's driver does, and the guest never sees it.)"""
    c = api_vm.client()
    for path, body in (("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                         "initrd_path": str(initramfs),
                                         "boot_args": guest_boot_args(end="wait")}),
                       ("/metrics", {"metrics_path": str(workdir / "m.json")})):
        assert c.put(path, body).status == 204
    assert c.put("/actions", {"action_type": "InstanceStart"}).status == 204
    api_vm.proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    run = DocRun("api_requests/actions.md", api_vm, workdir)
    run.check([("PUT", "/actions", 400), ("PUT", "/actions", 204), ("PUT", "/actions", 204)])
    rc = api_vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, api_vm.proc.report(f"after SendCtrlAltDel: ember {describe_returncode(rc)}")
    lines = (workdir / "m.json").read_text().splitlines()
    assert len(lines) >= 2, f"InstanceStart and FlushMetrics each write a line: {lines}"
