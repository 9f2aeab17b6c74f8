#!/usr/bin/python3
"""Writes the seed corpora in fuzz/corpus/<target>/: small valid inputs
that reach deep paths (well-formed API requests and config files, ELF and
bzImage headers, descriptor chains a Linux driver would build, TCP
handshakes with MMDS). The virtio scripts follow fuzz/fuzz_driver.h.

    fuzz/gen_seeds.py            # rewrites fuzz/corpus/ (committed)
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- API router and body parsers: "METHOD PATH\nBODY" ----

RL = {"bandwidth": {"size": 1048576, "one_time_burst": 0, "refill_time": 100},
      "ops": {"size": 100, "refill_time": 1000}}
DRIVE = {"drive_id": "rootfs", "path_on_host": "/img/rootfs.ext4", "is_root_device": True,
         "partuuid": None, "is_read_only": False, "cache_type": "Writeback",
         "io_engine": "Async", "rate_limiter": RL}
NET = {"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02",
       "rx_rate_limiter": RL, "tx_rate_limiter": {"ops": {"size": 5, "refill_time": 10}}}
MACHINE = {"vcpu_count": 2, "mem_size_mib": 256, "smt": False, "track_dirty_pages": False,
           "huge_pages": "None"}
BOOT = {"kernel_image_path": "/img/vmlinux", "initrd_path": "/img/initrd",
        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"}
LOGGER = {"log_path": "/tmp/ember.log", "level": "Debug", "show_level": True,
          "show_log_origin": False, "module": "vmm"}
METRICS = {"metrics_path": "/tmp/ember.metrics"}
MMDS_CFG = {"version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.170.2",
            "imds_compat": True}
MMDS = {"latest": {"meta-data": {"ami-id": "ami-1", "tags": ["a", "b"], "n": 1.5}}}

API = [
    ("GET", "/", None), ("GET", "/version", None), ("GET", "/vm/config", None),
    ("GET", "/machine-config", None), ("PUT", "/machine-config", MACHINE),
    ("PATCH", "/machine-config", {"vcpu_count": 4}), ("PUT", "/boot-source", BOOT),
    ("PUT", "/actions", {"action_type": "InstanceStart"}),
    ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
    ("PUT", "/actions", {"action_type": "FlushMetrics"}),
    ("PATCH", "/vm", {"state": "Paused"}), ("PATCH", "/vm", {"state": "Resumed"}),
    ("PUT", "/logger", LOGGER), ("PUT", "/metrics", METRICS),
    ("GET", "/mmds", None), ("PUT", "/mmds", MMDS), ("PATCH", "/mmds", {"latest": None}),
    ("PUT", "/mmds/config", MMDS_CFG), ("PUT", "/drives/rootfs", DRIVE),
    ("PATCH", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": "/img/b",
                                 "rate_limiter": RL}),
    ("PUT", "/network-interfaces/eth0", NET),
    ("PATCH", "/network-interfaces/eth0", {"iface_id": "eth0", "rx_rate_limiter": RL}),
    ("PUT", "/entropy", {"rate_limiter": RL}),
    ("PUT", "/vsock", {"guest_cid": 3, "uds_path": "/v.sock"}),
    ("PUT", "/balloon", {"amount_mib": 1}), ("GET", "/balloon/statistics", None),
    ("PUT", "/snapshot/create", {"snapshot_path": "/s"}),
    ("PUT", "/balloon", {"amount_mib": 64, "deflate_on_oom": True, "stats_polling_interval_s": 1,
                         "free_page_hinting": True, "free_page_reporting": True}),
    ("PATCH", "/balloon", {"amount_mib": 32}), ("GET", "/balloon", None),
    ("PATCH", "/balloon/statistics", {"stats_polling_interval_s": 5}),
    ("PATCH", "/balloon/hinting/start", {"acknowledge_on_stop": False}),
    ("PATCH", "/balloon/hinting/stop", None), ("GET", "/balloon/hinting/status", None),
    ("PUT", "/serial", {"serial_out_path": "/tmp/console"}),
    ("PUT", "/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": "/s/vm.snap",
                                 "mem_file_path": "/s/vm.mem"}),
    ("PUT", "/snapshot/load", {"snapshot_path": "/s/vm.snap", "resume_vm": True,
                               "track_dirty_pages": True,
                               "mem_backend": {"backend_type": "Uffd", "backend_path": "/s/uffd"},
                               "network_overrides": [{"iface_id": "eth0",
                                                      "host_dev_name": "tap1"}]}),
    ("PUT", "/snapshot/load", {"snapshot_path": "/s/vm.snap", "mem_file_path": "/s/vm.mem",
                               "enable_diff_snapshots": False}),
]


def api_seeds():
    for i, (method, path, body) in enumerate(API):
        text = f"{method} {path}\n"
        if body is not None:
            text += json.dumps(body)
        write("api_parse_fuzz", f"{i:02d}-{method}-{path.strip('/').replace('/', '_') or 'root'}",
              text)


# ---- Config file ----

def config_seeds():
    minimal = {"boot-source": {"kernel_image_path": "/img/vmlinux"}}
    full = {"boot-source": BOOT, "machine-config": MACHINE, "drives": [DRIVE,
            dict(DRIVE, drive_id="data", is_root_device=False, io_engine="Sync",
                 cache_type="Unsafe", is_read_only=True, rate_limiter=None)],
            "network-interfaces": [NET, {"iface_id": "eth1", "host_dev_name": "tap1"}],
            "logger": LOGGER, "metrics": METRICS, "mmds-config": MMDS_CFG,
            "balloon": {"amount_mib": 16, "deflate_on_oom": True, "stats_polling_interval_s": 2,
                        "free_page_hinting": False, "free_page_reporting": True},
            "vsock": None, "entropy": {"rate_limiter": RL},
            "cpu-config": None}
    write("config_fuzz", "minimal.json", json.dumps(minimal))
    write("config_fuzz", "full.json", json.dumps(full, indent=1))
    write("config_fuzz", "nulls.json", json.dumps(
        {"boot-source": {"kernel_image_path": "k", "initrd_path": None, "boot_args": None},
         "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": None},
         "drives": [], "network-interfaces": []}))


# ---- Kernel loader: ELF vmlinux and bzImage (+ trailing initrd bytes) ----

def elf(segments, entry, notes=b""):
    """notes: the bytes of one PT_NOTE segment (after the loads), if any."""
    ehdr_size, phdr_size = 64, 56
    phoff = ehdr_size
    nph = len(segments) + (1 if notes else 0)
    data_off = phoff + phdr_size * nph
    eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, phoff, 0, 0, ehdr_size, phdr_size,
                      nph, 64, 0, 0)
    phs, body = b"", b""
    for paddr, filesz, memsz in segments:
        phs += struct.pack("<IIQQQQQQ", 1, 5, data_off + len(body), paddr, paddr, filesz,
                           memsz, 0x1000)
        body += bytes((paddr + i) & 0xff for i in range(filesz))
    if notes:
        phs += struct.pack("<IIQQQQQQ", 4, 4, data_off + len(body), 0, 0, len(notes),
                           len(notes), 4)
        body += notes
    return eh + phs + body


def elf_note(owner, ntype, desc):
    name = owner + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def bzimage(version=0x20f, setup_sects=1, payload=2048, init_size=0x10000, initrd_max=0):
    img = bytearray((setup_sects + 1) * 512 + payload)
    # The setup header at 0x1f1 (Documentation/arch/x86/boot.rst).
    img[0x1f1] = setup_sects
    struct.pack_into("<I", img, 0x1f4, payload // 16)       # syssize
    struct.pack_into("<H", img, 0x1fe, 0xaa55)              # boot_flag
    img[0x201] = 0x6a                                       # jump: header ends at 0x26c
    struct.pack_into("<I", img, 0x202, 0x53726448)          # "HdrS"
    struct.pack_into("<H", img, 0x206, version)
    img[0x211] = 1                                          # loadflags: LOADED_HIGH
    struct.pack_into("<I", img, 0x22c, initrd_max)          # initrd_addr_max
    struct.pack_into("<H", img, 0x236, 1)                   # xloadflags: XLF_KERNEL_64
    struct.pack_into("<I", img, 0x238, 2047)                # cmdline_size
    struct.pack_into("<I", img, 0x260, init_size)
    return bytes(img)


def loader_seeds():
    mib = 1 << 20
    write("loader_fuzz", "elf-one", elf([(mib, 256, 4096)], mib + 16))
    write("loader_fuzz", "elf-two", elf([(mib, 128, 128), (2 * mib, 64, 8192)], 2 * mib))
    write("loader_fuzz", "elf-high", elf([(1 << 32, 64, 64), (mib, 64, 64)], mib))
    write("loader_fuzz", "elf-initrd", elf([(mib, 64, 64)], mib) + bytes(range(256)) * 2)
    # Xen's PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18), after a GNU one.
    pvh = elf_note(b"GNU", 3, bytes(20)) + elf_note(b"Xen", 18, struct.pack("<Q", mib + 32))
    write("loader_fuzz", "elf-pvh", elf([(mib, 256, 4096)], mib + 16, pvh))
    write("loader_fuzz", "elf-pvh32", elf([(mib, 256, 4096)], mib + 16,
                                          elf_note(b"Xen", 18, struct.pack("<I", mib + 64))))
    write("loader_fuzz", "bz-2.15", bzimage())
    write("loader_fuzz", "bz-2.06", bzimage(version=0x206, setup_sects=0, payload=1024,
                                            init_size=0))
    write("loader_fuzz", "bz-initrd-max", bzimage(initrd_max=0x2fffff, payload=4096))


# ---- virtio scripts (fuzz/fuzz_driver.h) ----

def u8(v):
    return struct.pack("<B", v & 0xff)


def u16(v):
    return struct.pack("<H", v & 0xffff)


def u32(v):
    return struct.pack("<I", v & 0xffffffff)


def u64(v):
    return struct.pack("<Q", v & 0xffffffffffffffff)


def reg_write(off, val, size=4):
    return u8(0) + u16(off) + u8({1: 0, 2: 1, 4: 2, 8: 3}[size]) + u64(val)


def reg_read(off, size=4):
    return u8(1) + u16(off) + u8({1: 0, 2: 1, 4: 2, 8: 3}[size])


def mem(gpa, data):
    return u8(2) + u8(0) + u16(gpa) + u8(len(data)) + data


def bring_up(mask=(1 << 64) - 1, log2=4):
    return u8(6) + u64(mask) + u8(log2)


def seg(length, write=False, fill=None):
    """A buffer: device-writable or not, filled with `fill` (bytes)."""
    fl = (1 if write else 0) | (2 if fill is not None else 0)
    out = u8(fl) + u16(length)
    if fill is not None:
        out += fill[:length].ljust(length, b"\0")
    return out


def chain(q, segs, indirect=False):
    return u8(5) + u8(q << 7 | (16 if indirect else 0) | (len(segs) - 1)) + b"".join(segs)


def linux_probe(features_lo, features_hi, qsize=16):
    """The register writes of Linux's virtio_mmio probe, one by one."""
    s = reg_read(0x000) + reg_read(0x004) + reg_read(0x008) + reg_write(0x070, 0)
    s += reg_write(0x070, 1) + reg_write(0x070, 3)
    s += reg_write(0x014, 1) + reg_read(0x010) + reg_write(0x014, 0) + reg_read(0x010)
    s += reg_write(0x024, 1) + reg_write(0x020, features_hi)
    s += reg_write(0x024, 0) + reg_write(0x020, features_lo)
    s += reg_write(0x070, 11) + reg_read(0x070)
    for q in range(2):
        base = 0x1000 + q * 0x2000
        s += reg_write(0x030, q) + reg_read(0x044) + reg_read(0x034) + reg_write(0x038, qsize)
        s += reg_write(0x080, base) + reg_write(0x084, 0)
        s += reg_write(0x090, base + 0x1000) + reg_write(0x094, 0)
        s += reg_write(0x0a0, base + 0x1400) + reg_write(0x0a4, 0)
        s += reg_write(0x044, 1)
    s += reg_write(0x070, 15) + reg_read(0x100) + reg_read(0x0fc)
    return s


def mmio_seeds():
    t = "virtio_mmio_fuzz"
    process = lambda ctl, per_chain: u8(7) + u8(ctl) + per_chain  # noqa: E731
    two = [seg(16, fill=b"header-bytes-16b"), seg(64, write=True)]
    write(t, "probe", linux_probe(0x200, 0x1 | 0x10 | 0x20, 16) + reg_write(0x050, 0)
          + reg_read(0x060) + reg_write(0x064, 1))
    write(t, "chain-pop", bring_up() + chain(0, two) + chain(0, [seg(8, fill=b"x" * 8),
          seg(32, write=True), seg(1, write=True)]) + process(0, u8(0) + u8(8) + u8(4) + u8(16)))
    write(t, "indirect", bring_up() + chain(0, [seg(16, fill=b"h" * 16), seg(512, write=True),
          seg(1, write=True)], indirect=True) + process(2, u8(0) + u8(16)))
    write(t, "small-queue", bring_up(log2=3) + chain(1, [seg(4, fill=b"abcd")])
          + chain(1, [seg(4, write=True)]) + process(1 | 16, u8(0) + u8(4) + u32(3) + u8(0)
          + u8(4) + u32(4)))
    no_event_idx = ((1 << 64) - 1) & ~(1 << 29)
    write(t, "no-event-idx", bring_up(no_event_idx) + chain(0, [seg(16, fill=b"z" * 16)])
          + process(4, u8(0) + u8(16)) + u8(9) + u8(10) + reg_read(0x060))
    write(t, "config", bring_up() + reg_read(0x100, 1) + reg_read(0x104, 2) + reg_read(0x108, 8)
          + reg_write(0x100, 0x1234, 2) + reg_read(0x0fc) + reg_write(0x070, 0))


def rng_seeds():
    t = "virtio_rng_fuzz"
    notify, tick = u8(7), lambda ms: u8(8) + u16(ms)  # noqa: E731
    bufs = chain(0, [seg(64, write=True)]) + chain(0, [seg(16, write=True),
                                                       seg(4096, write=True)])
    write(t, "plain", u8(0x40) + bufs + notify + chain(0, [seg(70000 & 0xffff, write=True)])
          + notify)
    write(t, "limited", u8(0x43) + bufs + bufs + notify + tick(5) + tick(200) + notify)
    write(t, "readable", u8(0x40) + chain(0, [seg(8, fill=b"12345678"), seg(8, write=True)])
          + chain(0, [seg(8, fill=b"x" * 8)], indirect=True) + notify)


def vsock_hdr(op, src_port, dst_port, n=0, src_cid=3, dst_cid=2, typ=1, flags=0,
              buf_alloc=65536, fwd_cnt=0):
    return struct.pack("<QQIIIHHIII", src_cid, dst_cid, src_port, dst_port, n, typ, op, flags,
                       buf_alloc, fwd_cnt)


def vsock_seeds():
    t = "virtio_vsock_fuzz"
    tx_notify, rx_notify, timer = u8(7), u8(8), u8(11)
    host = lambda data: u8(9) + u8(len(data)) + data  # noqa: E731
    client = lambda line: u8(10) + u8(len(line)) + line  # noqa: E731

    def pkt(op, sp, dp, payload=b"", **kw):
        h = vsock_hdr(op, sp, dp, len(payload), **kw) + payload
        return chain(1, [seg(len(h), fill=h)])
    rx = chain(0, [seg(4096, write=True)]) * 4 + rx_notify
    write(t, "guest-connect", u8(0x40) + rx + pkt(1, 1000, 52) + tx_notify + host(b"hello")
          + pkt(5, 1000, 52, b"abc") + pkt(6, 1000, 52) + pkt(7, 1000, 52) + tx_notify
          + rx + host(b"") + pkt(4, 1000, 52, flags=3) + tx_notify)
    write(t, "host-connect", u8(0x40) + rx + client(b"CONNECT 9\n") + pkt(2, 9, 1 << 30)
          + tx_notify + client(b"connect 10\n") + rx + host(b"") + pkt(3, 10, (1 << 30) + 1)
          + pkt(5, 9, 1 << 30, b"x" * 100) + tx_notify + client(b"HELLO\n") + timer)
    hdr_split = vsock_hdr(1, 1001, 52)
    write(t, "bad", u8(0x40) + rx + chain(1, [seg(20, fill=b"s" * 20)])
          + chain(1, [seg(44, fill=vsock_hdr(5, 1, 52, 1000))])
          + pkt(1, 1, 52, src_cid=9) + pkt(1, 1, 52, typ=2) + pkt(5, 7, 7, b"zz")
          + chain(1, [seg(10, fill=hdr_split[:10]), seg(34, fill=hdr_split[10:])])
          + chain(1, [seg(44, write=True)]) + tx_notify + chain(0, [seg(8, write=True)])
          + rx_notify + reg_write(0x070, 0) + tx_notify)


def balloon_seeds():
    t = "virtio_balloon_fuzz"

    def bchain(q, segs):
        return u8(7) + u8(q) + u8(len(segs) - 1) + b"".join(segs)

    def notify(q):
        return u8(8) + u8(q)

    def pfns(*p):
        return b"".join(u32(x) for x in p)

    def stat(tag, val):
        return u16(tag) + u64(val)
    write(t, "inflate-deflate", u8(0x0f) + bchain(0, [seg(16, fill=pfns(1, 2, 3, 3))]) + notify(0)
          + bchain(1, [seg(8, fill=pfns(2, 0x99999))]) + notify(1)
          + bchain(0, [seg(8, fill=pfns(0x100000, 0x100003))]) + notify(0) + u8(9) + u16(1))
    write(t, "stats", u8(0x01) + bchain(2, [seg(30, fill=stat(4, 1000) + stat(5, 9) + stat(77, 1))])
          + notify(2) + u8(11) + u8(3) + u8(10) + u8(2) + bchain(2, [seg(10, fill=stat(0, 5))])
          + notify(2) + u8(11) + u8(3))
    write(t, "hinting", u8(0x02) + u8(11) + u8(0) + u8(1) + bchain(2, [seg(4, fill=u32(2))])
          + bchain(2, [seg(4096, write=True)]) + notify(2) + bchain(2, [seg(4, fill=u32(0))])
          + notify(2) + u8(11) + u8(2) + u8(11) + u8(1))
    write(t, "reporting", u8(0x04) + bchain(2, [seg(4096, write=True), seg(8192, write=True)])
          + notify(2))


VNET = bytes(12)
ETH = bytes.fromhex("06 00 ac 10 00 02 06 00 ac 10 00 01 08 00")


def blk_hdr(typ, sector):
    return struct.pack("<IIQ", typ, 0, sector)


def block_seeds():
    t = "virtio_block_fuzz"
    notify = u8(7)

    def req(typ, sector, data_len, nseg=1, writable=True, fill=None, indirect=False):
        segs = [seg(16, fill=blk_hdr(typ, sector))]
        for _ in range(nseg):
            segs.append(seg(data_len // nseg, write=writable,
                            fill=fill if not writable else None))
        segs.append(seg(1, write=True))
        return chain(0, segs, indirect)
    rw = (req(1, 2, 1024, 2, False, bytes(range(256)) * 4) + req(0, 2, 1024, 1)
          + chain(0, [seg(16, fill=blk_hdr(4, 0)), seg(1, write=True)])
          + chain(0, [seg(16, fill=blk_hdr(8, 0)), seg(20, write=True), seg(1, write=True)])
          + notify)
    for engine in (0, 1):
        name = "async" if engine else "sync"
        flags = 0x40 | engine  # queue of 16
        write(t, f"{name}-rw", u8(flags | 4) + rw)
        write(t, f"{name}-read-only", u8(flags | 2) + req(1, 0, 512, 1, False, b"w" * 512)
              + req(0, 31, 512) + notify)
        write(t, f"{name}-bad", u8(flags) + req(0, 40, 512) + req(9, 0, 512)
              + req(1, 31, 1024, 1, False, b"q" * 1024)
              + chain(0, [seg(8, fill=b"short")]) + notify + u8(9))
        write(t, f"{name}-indirect", u8(flags) + req(0, 1, 2048, 4, indirect=True)
              + req(1, 5, 512, 1, False, b"i" * 512, indirect=True) + notify + notify)
        write(t, f"{name}-patch", u8(flags) + req(1, 4, 512, 1, False, b"p" * 512) + notify
              + u8(10) + req(0, 4, 512) + notify)
        write(t, f"{name}-reset", u8(flags) + req(0, 0, 512) + notify + reg_write(0x070, 0)
              + bring_up(log2=2) + req(0, 3, 512) + notify)


def net_seeds():
    t = "virtio_net_fuzz"
    frame = ETH + bytes(range(50))
    bcast = b"\xff" * 6 + ETH[6:] + bytes(40)
    tx = lambda f: chain(1, [seg(len(VNET + f), fill=VNET + f)]) + u8(7)  # noqa: E731
    rxbufs = chain(0, [seg(1526, write=True)]) + chain(0, [seg(1526, write=True)])
    backend = lambda f: u8(9) + u16(len(VNET + f)) + VNET + f  # noqa: E731
    inject = lambda f: u8(10) + u16(len(f)) + f  # noqa: E731
    write(t, "tx", u8(0x41) + tx(frame) + tx(frame[:20]) + u8(11))
    write(t, "rx-backend", u8(0x41) + rxbufs + u8(8) + backend(frame) + backend(frame[:14]))
    write(t, "rx-inject", u8(0x43) + rxbufs + u8(8) + inject(frame) + inject(bcast) + u8(8))
    write(t, "mmds-hook", u8(0x41) + u8(12) + u8(1) + rxbufs + u8(8) + tx(bcast) + tx(frame)
          + u8(11))
    no_mrg = ((1 << 64) - 1) & ~(1 << 15)
    write(t, "no-mrg", u8(0x48) + bring_up(no_mrg, 4) + chain(0, [seg(12, write=True),
          seg(1514, write=True)]) + u8(8) + backend(frame) + u8(11))
    csum = bytes([1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0])  # NEEDS_CSUM at 34 + 16
    # A snapshot with a held receive buffer and an injected frame in
    # flight (round trip), and hostile states.
    write(t, "snapshot", u8(0x43) + rxbufs + u8(8) + backend(frame) + inject(frame)
          + u8(13) + u8(0) + u8(8) + backend(frame) + u8(11))
    hostile = json.dumps({"rx_frame": "00" * 11, "injected": [{"frame": "ab"}]}).encode()
    write(t, "snapshot-hostile", u8(0x41) + rxbufs + u8(8) + u8(13) + u8(1) + u16(len(hostile))
          + hostile + u8(8))
    write(t, "tx-csum", u8(0x41) + chain(1, [seg(12, fill=csum), seg(len(frame), fill=frame)])
          + u8(7) + u8(11))


# ---- MMDS ----

def mmds_seeds():
    t = "mmds_http_fuzz"
    put = (b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
           b"X-metadata-token-ttl-seconds: 21600\r\n\r\n")
    get = (b"GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: "
           b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n")
    step = 5 << 3  # 186-byte slices
    write(t, "v2-token", bytes([1 | step]) + put + get)
    write(t, "v1-get", bytes([step]) + b"GET /latest/meta-data/ HTTP/1.1\r\nAccept: "
          b"application/json\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    write(t, "v2-aws-token", bytes([3 | step]) + b"PUT /latest/api/token HTTP/1.1\r\n"
          b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n"
          b"GET /latest/meta-data/ HTTP/1.1\r\nX-aws-ec2-metadata-token: x\r\n\r\n")
    write(t, "v2-forwarded", bytes([1]) + b"PUT /latest/api/token HTTP/1.1\r\n"
          b"X-Forwarded-For: 1.2.3.4\r\nX-metadata-token-ttl-seconds: 1\r\n\r\n")
    write(t, "store", bytes([4]) + json.dumps(MMDS).encode())
    n = "mmds_netstack_fuzz"
    syn = lambda who: bytes([5, who, 1, 16])  # noqa: E731
    ack = lambda who: bytes([5, who, 0, 64])  # noqa: E731
    drain = bytes([3, 255, 9])
    reqst = lambda who, pick: bytes([4, who, pick, 0])  # noqa: E731
    write(n, "v2-token", bytes([1]) + syn(0) + drain + ack(0) + reqst(0, 2) + drain + ack(0)
          + reqst(0, 4) + drain)
    write(n, "v1-get", bytes([0]) + syn(1) + drain + ack(1) + reqst(1, 1) + drain + ack(1)
          + reqst(1, 3) + drain + bytes([2, 200]) + drain)
    write(n, "arp", bytes([0, 6, 0, 0]) + drain)


# The corpora written here; others in fuzz/corpus/ (api_http, snapshot_file_fuzz: real
# state files written by Ember) are kept.
TARGETS = ["api_parse_fuzz", "config_fuzz", "loader_fuzz", "virtio_mmio_fuzz",
           "virtio_block_fuzz", "virtio_net_fuzz", "virtio_rng_fuzz", "virtio_vsock_fuzz",
           "virtio_balloon_fuzz",
           "mmds_http_fuzz",
           "mmds_netstack_fuzz"]


def main():
    for t in TARGETS:
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    api_seeds()
    config_seeds()
    loader_seeds()
    mmio_seeds()
    block_seeds()
    net_seeds()
    rng_seeds()
    vsock_seeds()
    balloon_seeds()
    mmds_seeds()


if __name__ == "__main__":
    main()
