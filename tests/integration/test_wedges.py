"""Wedges: inputs and guests that used to stop Ember's VMM thread for good,
so that the API never answered and SIGTERM was ignored (issue 16).

Each test fails by a bound (the API's request timeout, the exit timeout)
where Ember would have hung, and checks afterwards that the API still
answers and that SIGTERM still ends Ember with status 0.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from api_client import check_error, check_ok
from ember_harness import EXIT_TIMEOUT, describe_returncode
from test_api import fake_boot_files, vm_config

# A refusal must come at once, not after some I/O timeout.
PROMPT = 5.0


def expect_sigterm_exit(vm, what: str):
    vm.proc.proc.send_signal(signal.SIGTERM)
    rc = vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, vm.proc.report(f"{what}: SIGTERM, then ember {describe_returncode(rc)}")


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    resp = fn(*args, **kw)
    return resp, time.monotonic() - t0


# --- user-given paths that are not files ----------------------------------------

def test_fifo_boot_files_are_refused_promptly(api_vm, workdir):
    """A FIFO as kernel_image_path or initrd_path used to park the VMM thread
    in open() until some writer came: now a 400 naming the path, at once."""
    c = api_vm.client()
    kernel, initrd = fake_boot_files(workdir)
    fifo = workdir / "boot.fifo"
    os.mkfifo(fifo)
    for body, field in (({"kernel_image_path": str(fifo)}, "kernel_image_path"),
                        ({"kernel_image_path": kernel, "initrd_path": str(fifo)}, "initrd_path")):
        resp, took = timed(c.put, "/boot-source", body)
        check_error(resp, field, str(fifo), context=f"PUT /boot-source with {field} a FIFO")
        assert took < PROMPT, f"the refusal of a FIFO {field} took {took:.1f} s"
    for path, words in ((workdir, ("directory",)), ("/dev/null", ("character device",))):
        check_error(c.put("/boot-source", {"kernel_image_path": str(path)}), str(path), *words,
                    context=f"PUT /boot-source with kernel_image_path {path}")
    check_ok(c.put("/boot-source", {"kernel_image_path": kernel, "initrd_path": initrd}), 204,
             None, "PUT /boot-source with regular files after the refusals")
    expect_sigterm_exit(api_vm, "after refused boot files")


@pytest.mark.parametrize("read_only", [True, False], ids=["ro", "rw"])
def test_drive_paths_that_are_not_disks_are_refused(api_vm, workdir, read_only):
    """A drive's path_on_host must be a regular file or a block device: a
    FIFO (read-only, it used to block the VMM thread in open()), a directory
    and a character device are refused at PUT time, naming the path."""
    c = api_vm.client()
    before = vm_config(c)
    fifo = workdir / "disk.fifo"
    os.mkfifo(fifo)
    for path, words in ((fifo, ("FIFO",)), (workdir, ("directory",)),
                        ("/dev/null", ("character device",))):
        body = {"drive_id": "data", "path_on_host": str(path), "is_root_device": False,
                "is_read_only": read_only}
        resp, took = timed(c.put, "/drives/data", body)
        check_error(resp, str(path), *words, context=f"PUT /drives/data path_on_host {path}")
        assert took < PROMPT, f"the refusal of {path} took {took:.1f} s"
    assert vm_config(c) == before, "a refused drive changed the configuration"
    disk = workdir / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    check_ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                    "is_root_device": False, "is_read_only": read_only}),
             204, None, "PUT /drives/data with a regular file")
    expect_sigterm_exit(api_vm, "after refused drives")
