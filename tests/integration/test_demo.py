"""`make demo` on a fresh machine: with no minimal kernel in the cache it
boots Debian's packaged kernel at once (no 5-minute kernel build first) and
shows the guest's banner.

Runs tools/demo.sh with EMBER_CACHE set to an empty directory, seeded only
with the hostile test programs (a static C build, slow under the test
host's TCG, and no part of what is measured) and given Debian's kernel
through EMBER_DEBIAN_VMLINUZ as run-tests.sh does (the test host has no
network for the download).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ember_harness import _SCALE

pytestmark = pytest.mark.boot

REPO = Path(__file__).resolve().parents[2]
# A fresh machine's demo shows a console within 2 minutes; the test host's
# TCG makes everything slower, so this is the scaled failure bound.
DEMO_TIMEOUT = 240 * _SCALE


def test_demo_boots_debians_kernel_until_the_minimal_one_is_cached(ember_bin, initramfs,
                                                                   debian_vmlinuz, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    real_cache = Path(initramfs).parents[2]            # <cache>/guest-initramfs/<key>/...
    os.symlink(real_cache / "guest-evil", cache / "guest-evil")
    env = dict(os.environ, EMBER_CACHE=str(cache), EMBER_TESTHOST="never",
               EMBER_DEBIAN_VMLINUZ=str(debian_vmlinuz),
               BUILD=os.path.relpath(Path(ember_bin).parent, REPO))
    run = subprocess.run([str(REPO / "tools" / "demo.sh")], cwd=REPO, env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=DEMO_TIMEOUT)
    report = f"demo.sh exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, report
    assert "Hello from inside an Ember microVM!" in run.stdout, report
    assert "booting Debian's packaged kernel" in run.stderr, report
    assert f"booting {debian_vmlinuz.name} with Ember" in run.stderr, report
    assert not (cache / "guest-kernel").exists(), "the demo built the minimal kernel:\n" + report
