"""Fixtures for Ember's integration tests.

The artefacts come from the environment (tools/run-tests.sh sets them). A
missing or unusable one makes every test that needs it fail with a message
naming the variable: the suite never skips for want of an input.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ember_harness import EmberLauncher, guest_boot_args, vm_config

# --- resuming after a test-host crash ----------------------------------------------
#
# tools/run-tests.sh gives the nested test host another try when it hangs or
# its kernel locks up (status 124/125: the host, never a test). With
# EMBER_TEST_PROGRESS set, every test that ended (passed, skipped or
# xfailed) is recorded there as it ends, and a later attempt does not run
# those again: it goes on where the dead test host stopped. Failed tests
# always run again.
#
# Every outcome is also logged, with the attempt's number
# (EMBER_TEST_ATTEMPT), in EMBER_TEST_OUTCOMES: a test that failed in one
# attempt and passed in a later one is flaky, and tools/rerun-summary.py
# --attempts names it after the last attempt (tools/run-tests.sh), as the
# rerun within one attempt does (tools/pytest-rerun.sh); so is one that was
# running when its test host died and passed in a later attempt.

_PROGRESS = os.environ.get("EMBER_TEST_PROGRESS")
_OUTCOMES = os.environ.get("EMBER_TEST_OUTCOMES")
_ATTEMPT = os.environ.get("EMBER_TEST_ATTEMPT", "1")


def _done() -> set[str]:
    try:
        return set(Path(_PROGRESS).read_text().splitlines()) if _PROGRESS else set()
    except FileNotFoundError:
        return set()


def pytest_collection_modifyitems(config, items):
    done = _done()
    skip = [i for i in items if i.nodeid in done]
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = [i for i in items if i.nodeid not in done]
        print(f"\n== resuming: {len(skip)} tests ended in an earlier attempt whose test host "
              "crashed; they are not run again")
        config._ember_resumed = True


def pytest_runtest_logstart(nodeid, location):
    # A test that starts and never ends in this attempt: its test host died
    # under it (tools/rerun-summary.py --attempts names it if it passes later).
    if _OUTCOMES:
        with open(_OUTCOMES, "a") as f:
            f.write(f"{_ATTEMPT} started {nodeid}\n")


def pytest_runtest_logreport(report):
    ended = (report.when == "call" and (report.passed or report.skipped)) or \
        (report.when == "setup" and report.skipped)
    if _PROGRESS and ended:
        with open(_PROGRESS, "a") as f:
            f.write(report.nodeid + "\n")
    if _OUTCOMES and (report.failed or (report.when == "call" and report.passed)):
        with open(_OUTCOMES, "a") as f:
            f.write(f"{_ATTEMPT} {'failed' if report.failed else 'passed'} {report.nodeid}\n")
    if _OUTCOMES and report.failed:
        # pytest prints a failure's report only at the end of its session,
        # which a test host that dies later in the attempt never reaches:
        # kept here, under a "@@ <attempt> <test id> [<phase>]" line,
        # tools/rerun-summary.py shows it with the FLAKY line.
        with open(_OUTCOMES + ".reports", "a") as f:
            f.write(f"@@ {_ATTEMPT} {report.nodeid} [{report.when}]\n{report.longreprtext}\n")


def pytest_sessionfinish(session, exitstatus):
    # Everything had ended before the crash: nothing left to run is a pass.
    if exitstatus == 5 and getattr(session.config, "_ember_resumed", False):
        session.exitstatus = 0


def _required_file(var: str, *, executable: bool = False) -> Path:
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set. Run the suite through tools/run-tests.sh, or set {var} "
                    "by hand (see tests/integration/README.md).", pytrace=False)
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"{var}={value}: no such file", pytrace=False)
    if executable and not os.access(path, os.X_OK):
        pytest.fail(f"{var}={value}: not executable", pytrace=False)
    if path.stat().st_size == 0:
        pytest.fail(f"{var}={value}: empty file", pytrace=False)
    return path.resolve()


@pytest.fixture(scope="session")
def ember_bin() -> Path:
    """The ember binary under test (EMBER_BIN)."""
    return _required_file("EMBER_BIN", executable=True)


@pytest.fixture(scope="session")
def kernel_vmlinux() -> Path:
    """Ember's minimal guest kernel as an uncompressed ELF (EMBER_KERNEL_VMLINUX)."""
    return _required_file("EMBER_KERNEL_VMLINUX")


@pytest.fixture(scope="session")
def kernel_bzimage() -> Path:
    """The same minimal kernel as a bzImage (EMBER_KERNEL_BZIMAGE)."""
    return _required_file("EMBER_KERNEL_BZIMAGE")


@pytest.fixture(scope="session")
def debian_vmlinuz() -> Path:
    """Debian's stock kernel bzImage (EMBER_DEBIAN_VMLINUZ)."""
    return _required_file("EMBER_DEBIAN_VMLINUZ")


@pytest.fixture(scope="session")
def rootfs_image() -> Path:
    """The ext4 root filesystem image (EMBER_ROOTFS); shared: attach a copy
    read-write, or the image itself read-only."""
    return _required_file("EMBER_ROOTFS")


@pytest.fixture(scope="session")
def initramfs() -> Path:
    """The busybox test initramfs (EMBER_INITRAMFS)."""
    return _required_file("EMBER_INITRAMFS")


@pytest.fixture(scope="session")
def debian_initramfs() -> Path:
    """The busybox initramfs plus Debian's virtio_mmio, virtio_blk and ext4
    modules for EMBER_DEBIAN_VMLINUZ (EMBER_DEBIAN_INITRAMFS)."""
    return _required_file("EMBER_DEBIAN_INITRAMFS")


@pytest.fixture
def workdir(tmp_path_factory) -> Path:
    """A fresh per-test directory for configs and input files.

    Its name ("vm<N>") is neutral on purpose: error messages that quote a path
    must not pass a keyword check just because the test's name is in the path.
    """
    return tmp_path_factory.mktemp("vm")


class TestNetns:
    """A network namespace of the test session's own, with TAP devices
    tap0..tap{TAPS-1} in it (up, no addresses). Ember runs inside it, as the
    jailer's --netns would put it, so the TAPs it opens and any traffic stay
    in a namespace the tests made."""

    TAPS = 8

    def __init__(self):
        self.name = f"ember-test-{os.getpid()}"
        self._ip("netns", "add", self.name)
        for i in range(self.TAPS):
            self.ip("tuntap", "add", f"tap{i}", "mode", "tap")
            self.ip("link", "set", f"tap{i}", "up")
        self.ip("link", "set", "lo", "up")

    @staticmethod
    def _ip(*args: str, netns: str | None = None) -> str:
        argv = (["nsenter", f"--net=/run/netns/{netns}"] if netns else []) + ["ip", *args]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            pytest.fail(f"ip {' '.join(args)}: {run.stderr.strip()}", pytrace=False)
        return run.stdout

    def ip(self, *args: str) -> str:
        """`ip args` inside the namespace."""
        return self._ip(*args, netns=self.name)

    def argv(self, *argv: str) -> list[str]:
        """argv run inside the namespace (nsenter: the network namespace
        only; `ip netns exec` would also make a mount namespace)."""
        return ["nsenter", f"--net=/run/netns/{self.name}", *argv]

    def run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        """Runs a command inside the namespace."""
        return subprocess.run(self.argv(*argv), **kw)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def test_netns():
    ns = TestNetns()
    yield ns
    ns.close()


@pytest.fixture
def ember(ember_bin, workdir, test_netns):
    """Starts ember processes (see EmberLauncher.start) inside the session's
    network namespace; kills leftovers at teardown."""
    launcher = EmberLauncher(ember_bin, workdir, netns=test_netns.name)
    yield launcher
    launcher.close()


@pytest.fixture
def valid_config(kernel_vmlinux, initramfs) -> dict:
    """A config that boots: bad-input tests break exactly one thing in it."""
    return vm_config(kernel_vmlinux, initramfs, boot_args=guest_boot_args(), vcpus=1, mem_mib=128)


# --- the API (test_api.py) -------------------------------------------------------------

@pytest.fixture
def api_ember(ember, workdir):
    """Starts `ember --api-sock <workdir>/api.sock [args]` through the harness and
    waits until the socket accepts connections: `api_ember.start(*args, sock=None)`
    returns an api_client.ApiVm (.proc, .sock, .client())."""
    from api_client import ApiLauncher  # needs python3-yaml and python3-jsonschema

    launcher = ApiLauncher(ember, workdir)
    yield launcher
    launcher.close()


@pytest.fixture
def api_vm(api_ember):
    """One ember serving the API on <workdir>/api.sock, with default options."""
    return api_ember.start()
