"""ember-jailer: the jail it builds and the process it leaves running.

Most tests run the static helper jail_probe (built beside ember) in Ember's
place: it writes what it sees from inside the jail to /probe.out and waits,
so the test can also look at it from outside (/proc/<pid>). They need root,
and run wherever the suite runs (natively as root, or in the test host). One
test boots a guest through the jailer; it needs a static build/ember (nothing
else is in the jail) and is skipped, saying so, while ember is dynamically
linked.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from api_client import ApiClient, check_ok
from ember_harness import BOOT_TIMEOUT, STEP_TIMEOUT, guest_boot_args, vm_config

UID, GID = 1234, 1235
RUN_TIMEOUT = 30  # the jailer itself: it only makes files and namespaces
PROBE_TIMEOUT = 30

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the jailer needs root")


# --- fixtures and helpers -------------------------------------------------------------

def _built(ember_bin: Path, name: str) -> Path:
    path = ember_bin.parent / name
    if not path.is_file():
        pytest.fail(f"{path}: not built (it is built beside {ember_bin.name} by meson)",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def jailer_bin(ember_bin) -> Path:
    return _built(ember_bin, "ember-jailer")


@pytest.fixture(scope="session")
def probe_bin(ember_bin) -> Path:
    return _built(ember_bin, "jail_probe")


def wait_until(what: str, cond, timeout: float):
    """Polls cond() until it is true; fails naming what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while pid runs (not gone, not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def v1_mount(controller: str) -> Path | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] == "cgroup" and controller in f[3].split(","):
            return Path(f[1])
    return None


def v2_mount() -> Path | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        f = line.split()
        if len(f) >= 3 and f[2] == "cgroup2":
            return Path(f[1])
    return None


def v2_test_controller(root: Path) -> tuple[str, str, str] | None:
    """A controller this v2 hierarchy offers, with a file and a value to set."""
    offered = (root / "cgroup.controllers").read_text().split()
    for ctrl, file, value in (("pids", "pids.max", "77"), ("memory", "memory.max", "268435456"),
                              ("hugetlb", "hugetlb.2MB.max", "4194304")):
        if ctrl in offered:
            return ctrl, file, value
    return None


def remove_cgroup(path: Path):
    """rmdir a cgroup and its empty parents, up to the hierarchy's root."""
    roots = {m for m in (v1_mount("pids"), v2_mount()) if m}
    for p in [path, *path.parents]:
        if p in roots or p == Path("/"):
            break
        try:
            p.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break


def misc_has(name: str) -> bool:
    """Whether /proc/misc lists the device (the jailer makes /dev/userfaultfd if so)."""
    return any(line.split()[1:] == [name] for line in Path("/proc/misc").read_text().splitlines())


class Jails:
    """Runs ember-jailer with jails under one base directory; kills what it
    leaves running and removes the jails and cgroups at teardown."""

    def __init__(self, jailer: Path, probe: Path, base: Path):
        self.jailer, self.probe, self.base = jailer, probe, base
        self.base.mkdir()
        self.pids: list[int] = []
        self.cgroups: list[Path] = []
        self.v2_enabled: list[tuple[Path, str]] = []
        self.seq = 0

    def new_id(self) -> str:
        self.seq += 1
        return f"jail-{os.getpid()}-{self.seq}"

    def root(self, jail_id: str, exec_name: str = "jail_probe") -> Path:
        return self.base / exec_name / jail_id / "root"

    def argv(self, jail_id: str, *flags: str, exec_file: Path | None = None,
             extra: tuple[str, ...] = ()) -> list[str]:
        argv = [str(self.jailer), "--id", jail_id, "--exec-file", str(exec_file or self.probe),
                "--uid", str(UID), "--gid", str(GID), "--chroot-base-dir", str(self.base),
                *flags]
        return argv + ["--", *extra] if extra else argv

    def run(self, jail_id: str, *flags: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(jail_id, *flags, **kw), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)

    def start_probe(self, jail_id: str, *flags: str, extra: tuple[str, ...] = ()) -> "Probe":
        """Jails the probe with --daemonize (the jailer exits once it is
        running) and waits for its report."""
        run = self.run(jail_id, "--daemonize", *flags, extra=extra)
        assert run.returncode == 0, f"jailer failed ({run.returncode}): {run.stderr}"
        assert run.stdout == "" and run.stderr == "", (run.stdout, run.stderr)
        root = self.root(jail_id)
        pid_file = root / "jail_probe.pid"
        text = wait_until(f"{pid_file}", lambda: pid_file.is_file() and pid_file.read_text(),
                          PROBE_TIMEOUT)
        pid = int(text)
        self.pids.append(pid)
        return Probe(pid, root)

    def close(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(f"pid {pid} to end", lambda: not alive(pid), PROBE_TIMEOUT)
        for cg in self.cgroups:
            remove_cgroup(cg)
        # The jailer leaves a controller it enabled in the root's
        # subtree_control (other cgroups may use it); this test's are undone.
        for root, ctrl in self.v2_enabled:
            try:
                (root / "cgroup.subtree_control").write_text(f"-{ctrl}\n")
            except OSError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


class Probe:
    def __init__(self, pid: int, root: Path):
        self.pid, self.root = pid, root
        out = root / "probe.out"
        text = wait_until(f"{out} (the probe's report)",
                          lambda: out.is_file() and out.read_text(), PROBE_TIMEOUT)
        self.report: dict[str, list[str]] = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            self.report.setdefault(key, []).append(value)

    def one(self, key: str) -> str:
        values = self.report.get(key, [])
        assert len(values) == 1, (key, self.report)
        return values[0]


@pytest.fixture
def jails(jailer_bin, probe_bin, workdir):
    j = Jails(jailer_bin, probe_bin, workdir / "jails")
    yield j
    j.close()


def tree(path: Path) -> list[str]:
    """Everything under path, relative, sorted: what a failure must leave as it was."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


# --- the jailed process --------------------------------------------------------------

def test_daemonized_in_new_pid_ns_sees_only_the_jail_as_uid_gid_without_capabilities(jails):
    jail_id = jails.new_id()
    p = jails.start_probe(jail_id, "--new-pid-ns", extra=("--config-file", "/vm.json"))

    # What it was given: Firecracker's arguments, then ours after "--";
    # nothing of our environment or fds.
    args = p.report["arg"]
    assert args[:3] == ["/jail_probe", "--id", jail_id], args
    assert [args[i] for i in (3, 5, 7)] == ["--start-time-us", "--start-time-cpu-us",
                                            "--parent-cpu-time-us"], args
    assert all(args[i].isdigit() for i in (4, 6, 8)), args
    assert args[9:] == ["--config-file", "/vm.json"], args
    assert p.one("env_count") == "0"
    assert p.one("extra_fds") == "0"
    assert p.one("cwd") == "/"

    # pid 1 of its own PID namespace, in its own mount namespace.
    assert p.one("pid") == "1"
    assert ns(p.pid, "pid") != ns("self", "pid")
    assert ns(p.pid, "mnt") != ns("self", "mnt")
    status = proc_status(p.pid)
    assert status["NSpid"].split() == [str(p.pid), "1"], status["NSpid"]

    # The configured ids, no supplementary group, and no capability at all.
    assert status["Uid"].split() == [str(UID)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(GID)] * 4, status["Gid"]
    assert status["Groups"] == "", status["Groups"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap}: {status[cap]}"
    assert p.one("mknod") == "Operation not permitted"

    # Daemonized: standard I/O on /dev/null, a session of its own.
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{p.pid}/fd/{fd}") == "/dev/null"
    stat = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[3]) != os.getsid(0), "still in the test's session"

    # The jail is all it sees: its copy of the exec file, the pid file, the
    # device nodes and /run, all its own.
    entries = {e.split()[0]: e.split()[1:] for e in p.report["entry"]}
    own = f"{UID}:{GID}"
    assert set(entries) - {"/probe.tmp"} == {
        "/jail_probe", "/jail_probe.pid", "/dev", "/run", "/dev/net", "/dev/kvm", "/dev/urandom",
        "/dev/net/tun"} | ({"/dev/userfaultfd"} if misc_has("userfaultfd") else set()), \
        sorted(entries)
    assert entries["/jail_probe"][:2] == ["f", own]
    assert entries["/dev/kvm"] == ["c", own, "600", "10:232"]
    assert entries["/dev/net/tun"] == ["c", own, "600", "10:200"]
    assert entries["/dev/urandom"] == ["c", own, "600", "1:9"]
    for d in ("/dev", "/dev/net", "/run"):
        assert entries[d] == ["d", own, "700"], (d, entries[d])
    if Path("/dev/kvm").exists():
        assert "/dev/kvm ok" in p.report["open"], p.report["open"]
    # From outside: the jail's root is its, the exec file a copy.
    st = p.root.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (UID, GID, 0o700)
    copy = p.root / "jail_probe"
    assert copy.read_bytes() == jails.probe.read_bytes()
    assert copy.stat().st_ino != jails.probe.stat().st_ino
    assert int((p.root / "jail_probe.pid").read_text()) == p.pid
    # The default no-file limit, as Firecracker's jailer.
    assert p.one("nofile") == "2048 2048"


def test_without_daemonize_the_jailer_becomes_the_jailed_process(jails, tmp_path):
    """No --daemonize, no --new-pid-ns: the jailer execs in place (same pid,
    our PID namespace), with our stdout, and none of the fds or environment
    it was started with."""
    jail_id = jails.new_id()
    leak = open(tmp_path / "leak", "w")
    try:
        proc = subprocess.Popen(jails.argv(jail_id, extra=("--probe-exit",)),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, pass_fds=(leak.fileno(),),
                                env={"SECRET": "1", "PATH": "/usr/bin"})
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        leak.close()
    assert proc.returncode == 0, err
    p = Probe(proc.pid, jails.root(jail_id))
    assert p.one("pid") == str(proc.pid)
    assert int((p.root / "jail_probe.pid").read_text()) == proc.pid
    assert p.one("env_count") == "0"
    assert p.one("extra_fds") == "0"
    assert p.one("uid") == str(UID) and p.one("gid") == str(GID)


def test_resource_limits_reach_the_jailed_process(jails):
    p = jails.start_probe(jails.new_id(), "--resource-limit", "no-file=123",
                          "--resource-limit", "fsize=1048576")
    assert p.one("nofile") == "123 123"
    assert p.one("fsize") == "1048576 1048576"
    limits = Path(f"/proc/{p.pid}/limits").read_text()
    assert any(line.startswith("Max open files") and line.split()[3:5] == ["123", "123"]
               for line in limits.splitlines()), limits


def test_netns_puts_the_process_and_its_tap_in_that_namespace(jails):
    name = f"ember-jail-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "tuntap", "add", "jtap0", "mode",
                        "tap", "user", str(UID)], check=True, timeout=30)
        p = jails.start_probe(jails.new_id(), "--netns", f"/run/netns/{name}")
        assert sorted(p.report["netif"]) == ["jtap0", "lo"], p.report.get("netif")
        netns_ino = os.stat(f"/run/netns/{name}").st_ino
        assert ns(p.pid, "net") == f"net:[{netns_ino}]"
        # The TAP device node works for it there (opening needs no name yet).
        assert "/dev/net/tun ok" in p.report["open"], p.report["open"]
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30)


# --- cgroups -------------------------------------------------------------------------

def cgroup_pids(path: Path, v1: bool) -> list[int]:
    return [int(x) for x in (path / ("tasks" if v1 else "cgroup.procs")).read_text().split()]


def test_cgroup_v1_values_and_default_parent(jails):
    mount = v1_mount("pids")
    if mount is None:
        pytest.skip("no cgroup v1 hierarchy with the pids controller on this host "
                    "(/proc/mounts)")
    jail_id = jails.new_id()
    cg = mount / "jail_probe" / jail_id  # --parent-cgroup defaults to the exec file's name
    jails.cgroups.append(cg)
    p = jails.start_probe(jail_id, "--cgroup", "pids.max=77", "--new-pid-ns")
    assert (cg / "pids.max").read_text().strip() == "77"
    assert p.pid in cgroup_pids(cg, v1=True)


def need_v2(jails: Jails) -> tuple[Path, tuple[str, str, str]]:
    root = v2_mount()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted on this host (/proc/mounts)")
    ctrl = v2_test_controller(root)
    if ctrl is None:
        pytest.skip(f"{root}/cgroup.controllers offers none of pids, memory, hugetlb")
    if ctrl[0] not in (root / "cgroup.subtree_control").read_text().split():
        jails.v2_enabled.append((root, ctrl[0]))
    return root, ctrl


def test_cgroup_v2_values_land_in_parent_slash_id(jails):
    root, (ctrl, file, value) = need_v2(jails)
    jail_id, parent = jails.new_id(), f"ember-test-{os.getpid()}/uvms"
    cg = root / parent / jail_id
    jails.cgroups.append(cg)
    p = jails.start_probe(jail_id, "--cgroup-version", "2", "--cgroup", f"{file}={value}",
                          "--parent-cgroup", parent)
    assert (cg / file).read_text().strip() == value
    assert cgroup_pids(cg, v1=False) == [p.pid]
    assert ctrl in (root / parent / "cgroup.subtree_control").read_text().split()


def test_cgroup_v2_without_values_joins_an_existing_parent(jails):
    root, _ = need_v2(jails)
    parent = root / f"ember-test-{os.getpid()}-pre"
    parent.mkdir()
    jails.cgroups.append(parent)
    p = jails.start_probe(jails.new_id(), "--cgroup-version", "2", "--parent-cgroup",
                          parent.name)
    assert cgroup_pids(parent, v1=False) == [p.pid]


# --- errors: one line naming the step and the path, nothing left behind ------------

def check_refused(jails, run, *needles: str, before: list[str] | None = None):
    assert run.returncode != 0, f"accepted: {run.stdout} {run.stderr}"
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ember-jailer: error: "), run.stderr
    for n in needles:
        assert n in lines[0], f"{lines[0]!r} lacks {n!r}"
    assert tree(jails.base) == (before or []), "left behind: " + " ".join(tree(jails.base))


@pytest.mark.parametrize("bad_id, needle", [
    ("a_b", "invalid character at position 1"),
    ("a" * 65, "must be 1 to 64 characters long"),
    ("../x", "invalid character at position 0"),
])
def test_bad_id(jails, bad_id, needle):
    check_refused(jails, jails.run(bad_id), f"--id {bad_id[:60]}", needle)


def test_missing_chroot_base_dir(jails, workdir):
    argv = jails.argv(jails.new_id())
    argv[argv.index("--chroot-base-dir") + 1] = str(workdir / "nowhere")
    run = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    check_refused(jails, run, f"--chroot-base-dir {workdir / 'nowhere'}", "No such file")
    assert not (workdir / "nowhere").exists()


def test_missing_exec_file(jails, workdir):
    missing = workdir / "no-such-ember"
    check_refused(jails, jails.run(jails.new_id(), exec_file=missing),
                  f"--exec-file {missing}", "No such file or directory")


def test_existing_jail_is_refused_and_left_as_it_was(jails):
    jail_id = jails.new_id()
    first = jails.run(jail_id, extra=("--probe-exit",))
    assert first.returncode == 0, first.stderr
    before = tree(jails.base)
    again = jails.run(jail_id, extra=("--probe-exit",))
    check_refused(jails, again, str(jails.root(jail_id) / "jail_probe"), "already built",
                  before=before)
    assert int((jails.root(jail_id) / "jail_probe.pid").read_text()) > 0


@pytest.mark.parametrize("limit, needle", [
    ("no-file=abc", "--resource-limit no-file=abc: abc is not a limit"),
    ("stack=1", "unknown resource stack"),
    ("fsize", "expected <resource>=<value>"),
    # Parses, but no process may have that many fds: setrlimit fails after
    # the jail was built, which then comes down again.
    ("no-file=99999999999", "set resource limit no-file=99999999999"),
])
def test_bad_resource_limit(jails, limit, needle):
    check_refused(jails, jails.run(jails.new_id(), "--resource-limit", limit), needle)


def test_unknown_cgroup_controller(jails):
    run = jails.run(jails.new_id(), "--cgroup", "nosuchctl.max=1")
    # With no v1 hierarchy at all the hierarchy is what is missing.
    check_refused(jails, run, "nosuchctl" if v1_mount("pids") else "no cgroup v1 hierarchy")


def test_unknown_cgroup_file_v1_leaves_no_cgroup(jails):
    mount = v1_mount("pids")
    if mount is None:
        pytest.skip("no cgroup v1 hierarchy with the pids controller on this host")
    parent = f"ember-test-{os.getpid()}-bad"
    run = jails.run(jails.new_id(), "--cgroup", "pids.bogus=1", "--parent-cgroup", parent)
    check_refused(jails, run, "pids.bogus", str(mount / parent))
    assert not (mount / parent).exists()


def test_unknown_cgroup_file_v2_leaves_no_cgroup(jails):
    root, (ctrl, _, _) = need_v2(jails)
    parent = f"ember-test-{os.getpid()}-bad"
    run = jails.run(jails.new_id(), "--cgroup-version", "2", "--cgroup", f"{ctrl}.bogus=1",
                    "--parent-cgroup", parent)
    check_refused(jails, run, f"{ctrl}.bogus", str(root / parent))
    assert not (root / parent).exists()


@pytest.mark.parametrize("flags, needles", [
    (("--cgroup-version", "3"), ("--cgroup-version 3",)),
    (("--cgroup", "cpu.shares"), ("--cgroup cpu.shares", "<cgroup_file>=<value>")),
    (("--parent-cgroup", "../up"), ("--parent-cgroup ../up",)),
    (("--netns", "/nonexistent/netns"), ("--netns /nonexistent/netns", "No such file")),
    (("--uid", "x"), ("--uid given more than once",)),
    (("--no-such-flag",), ("unknown option --no-such-flag",)),
])
def test_other_bad_flags(jails, flags, needles):
    check_refused(jails, jails.run(jails.new_id(), *flags), *needles)


# --- a guest boots through the jailer --------------------------------------------------

def dynamic_interpreter(path: Path) -> bool:
    """True if the ELF at path asks for a dynamic loader (has PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            pytest.fail(f"{path}: not a 64-bit ELF", pytrace=False)
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))


def link_in(src: Path, dst: Path):
    """Hard-links src into the jail (a copy across filesystems)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def jail_guest(jails, ember_bin, kernel, initrd) -> tuple[str, Path, Path]:
    """A jail for ember with the guest's files linked in beforehand, as
    Firecracker's docs ask, and a 1 MiB marker disk the jailed user may
    write: (jail id, jail root, the disk's path outside)."""
    if dynamic_interpreter(ember_bin):
        pytest.skip(f"{ember_bin} is dynamically linked (PT_INTERP): a jail holds nothing "
                    "but ember, so it must be static")
    jail_id = jails.new_id()
    root = jails.root(jail_id, "ember")
    root.mkdir(parents=True)
    link_in(kernel, root / "vmlinux")
    link_in(initrd, root / "initrd")
    disk = jails.base / f"disk-{jail_id}.img"
    disk.write_bytes(b"\0" * (1 << 20))
    link_in(disk, root / "disk.img")
    os.chown(root / "disk.img", UID, GID)
    return jail_id, root, disk


def marker_config(script: str, **machine) -> dict:
    """The jailed VM's config: the guest runs `script` (which writes its
    marker to /dev/vda) and stays up."""
    code = base64.b64encode(script.encode()).decode()
    config = vm_config("/vmlinux", "/initrd", boot_args=guest_boot_args(
        "script", end="wait", extra=f"ember.script={code}"))
    config["machine-config"].update(machine)
    config["drives"] = [{"drive_id": "marker", "path_on_host": "/disk.img",
                         "is_root_device": False, "is_read_only": False}]
    return config


def start_jailed_ember(jails, jail_id, root, disk, ember_bin, marker: bytes, *flags,
                       extra=()) -> int:
    """Jails ember (--daemonize) with /vm.json and a log at /ember.log and
    waits for the guest's marker on its disk; returns ember's pid."""
    run = jails.run(jail_id, "--daemonize", *flags, exec_file=ember_bin,
                    extra=("--config-file", "/vm.json", "--log-path", "/ember.log", *extra))
    assert run.returncode == 0, run.stderr
    pid_file = root / "ember.pid"
    pid = int(wait_until(str(pid_file), lambda: pid_file.is_file() and pid_file.read_text(),
                         PROBE_TIMEOUT))
    jails.pids.append(pid)

    def seen():
        if not alive(pid):
            log = root / "ember.log"
            pytest.fail(f"ember exited before the guest wrote its marker; log: "
                        f"{log.read_text() if log.exists() else '(none)'}", pytrace=False)
        return disk.read_bytes()[:200].split(b"\n")[0].startswith(marker)

    wait_until("the guest's marker on its jailed disk", seen, BOOT_TIMEOUT + STEP_TIMEOUT)
    return pid


@pytest.mark.boot
def test_guest_boots_through_the_jailer(jails, ember_bin, kernel_vmlinux, initramfs,
                                        test_netns):
    jail_id, root, disk = jail_guest(jails, ember_bin, kernel_vmlinux, initramfs)
    test_netns.ip("tuntap", "add", "jtap1", "mode", "tap", "user", str(UID))
    try:
        config = marker_config("printf 'EMBER-JAILED-OK %s\\n' \"$(ls /sys/class/net | "
                               "tr '\\n' ' ')\" | dd of=/dev/vda conv=fsync 2>/dev/null")
        config["network-interfaces"] = [{"iface_id": "eth0", "host_dev_name": "jtap1"}]
        (root / "vm.json").write_text(json.dumps(config))
        pid = start_jailed_ember(jails, jail_id, root, disk, ember_bin, b"EMBER-JAILED-OK",
                                 "--new-pid-ns", "--netns", f"/run/netns/{test_netns.name}",
                                 extra=("--no-api",))
        assert b"eth0" in disk.read_bytes()[:200], disk.read_bytes()[:200]
        status = proc_status(pid)
        assert status["Uid"].split() == [str(UID)] * 4
        assert status["Gid"].split() == [str(GID)] * 4
        for cap in ("CapPrm", "CapEff", "CapBnd"):
            assert int(status[cap], 16) == 0, f"{cap}: {status[cap]}"
        assert status["NSpid"].split()[1:] == ["1"], status["NSpid"]
        # Every thread of the jailed Ember (main/VMM, vCPU) runs under its
        # seccomp filter with no_new_privs (docs/seccomp.md).
        for task in os.listdir(f"/proc/{pid}/task"):
            t = proc_status(int(task))
            assert t["Seccomp"] == "2" and t["NoNewPrivs"] == "1", (t["Name"], t["Seccomp"],
                                                                   t["NoNewPrivs"])
        assert ns(pid, "mnt") != ns("self", "mnt")
        assert ns(pid, "net") == f"net:[{os.stat(f'/run/netns/{test_netns.name}').st_ino}]"
        assert sorted(os.listdir(f"/proc/{pid}/root")) == sorted(
            ["dev", "run", "ember", "ember.pid", "vmlinux", "initrd", "disk.img", "vm.json",
             "ember.log"])
    finally:
        test_netns.ip("link", "del", "jtap1")


@pytest.mark.boot
def test_snapshots_of_a_jailed_vm(jails, ember_bin, kernel_vmlinux, initramfs):
    """Full and diff snapshots where Firecracker's users take them: in a
    jail, which has no /proc. The full one holds every page of guest memory
    (no pagemap to find the untouched ones, as Firecracker's full
    snapshots); the diff only what changed since."""
    mib = 64
    jail_id, root, disk = jail_guest(jails, ember_bin, kernel_vmlinux, initramfs)
    config = marker_config("echo EMBER-JAILED-SNAP | dd of=/dev/vda conv=fsync 2>/dev/null; "
                           "i=0; while true; do i=$((i+1)); sleep 1; done",
                           mem_size_mib=mib, track_dirty_pages=True)
    (root / "vm.json").write_text(json.dumps(config))
    start_jailed_ember(jails, jail_id, root, disk, ember_bin, b"EMBER-JAILED-SNAP",
                       extra=("--api-sock", "/api.sock", "--level", "Info"))
    c = ApiClient(root / "api.sock")
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    check_ok(c.put("/snapshot/create", {"snapshot_type": "Full", "snapshot_path": "/full.snap",
                                        "mem_file_path": "/full.mem"}), 204, None, "full, jailed")
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    check_ok(c.put("/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": "/diff.snap",
                                        "mem_file_path": "/diff.mem"}), 204, None, "diff, jailed")
    full, diff = (root / "full.mem").stat(), (root / "diff.mem").stat()
    assert full.st_size == diff.st_size == mib << 20, (full.st_size, diff.st_size)
    assert full.st_blocks * 512 >= mib << 20, f"the full snapshot holds {full.st_blocks * 512} bytes"
    assert diff.st_blocks * 512 < (mib << 20) // 2, f"the diff holds {diff.st_blocks * 512} bytes"
    # The log's writer thread may not have written the line yet.
    wait_until("the log's line on the full snapshot", lambda: "holds every page of guest "
               "memory" in (root / "ember.log").read_text(), STEP_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204)
