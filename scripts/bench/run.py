#!/usr/bin/env python3
"""The measurements behind BENCHMARKS.md (issue 12's table), run by scripts/bench.sh.

mayu (one or two binaries: `--now` and optionally `--before`) is run headless on loopback beside
Debian's nginx serving the same bytes, and beside plain-disk baselines measured in the same run.
Every row is measured in each of `--rounds` interleaved rounds (the binaries' order and the
mayu/reference order alternate); the table shows medians and the median of the per-round
ratios. Ratios read "mayu's speed as a fraction of the reference": 1.0 is as fast, above 1 is
faster, whatever the unit (for times and latencies it is reference/mayu).

Load clients: wrk (scripts/bench/report.lua, register.lua) and the stdlib clients below, all on
the same cores as the servers. `--smoke` runs everything tiny, once, and checks only that every
measure produced a number from correct answers, never a timing.
"""

import argparse
import asyncio
import ctypes
import http.client
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LIBC = ctypes.CDLL(None, use_errno=True)
# The measuring blocks in the order a round runs them (`--only` picks some).
BLOCKS = ("small", "storm", "continuous", "big")

BEGIN = "<!-- bench:begin (scripts/bench.sh rewrites from here to bench:end) -->"
END = "<!-- bench:end -->"
MB = 1_000_000
MIB = 1 << 20

FULL = dict(
    rounds=3,
    initrd=256 * MIB,
    kernel=64 * 1024,
    clients=32,
    secs=6,
    short_secs=3,
    conns=50,
    threads=2,
    range_len=MIB,
    storm=1000,
    small=11,
    big=10_000,
    stop_wait=60,
    load_stop_wait=20,
)
SMOKE = dict(
    rounds=1,
    initrd=4 * MIB,
    kernel=16 * 1024,
    clients=4,
    secs=1,
    short_secs=1,
    conns=4,
    threads=1,
    range_len=256 * 1024,
    storm=20,
    small=11,
    big=200,
    stop_wait=30,
    load_stop_wait=30,
)


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def die_with_parent():
    # PR_SET_PDEATHSIG: a server never outlives this driver, even if it is killed outright.
    LIBC.prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_seconds(pids):
    """utime + stime of the given processes, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    raise BenchError(f"no VmRSS for {pid}")


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except OSError:
            pass
    return out


def get(port, path, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


# --- load clients -------------------------------------------------------------------------


def whole_fetch(port, path, clients):
    """`clients` connections at once, each GETs `path` to its end. Wall time until the last
    byte of the last one; recv_into a 1 MiB buffer (the client's cost kept small)."""
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    buf = bytearray(MIB)
    mv = memoryview(buf)
    t0 = time.monotonic()
    state = {}
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = {"head": b"", "left": None, "status": None}
    total = 0
    statuses = []
    while state:
        for key, _ in sel.select(timeout=120):
            s = key.fileobj
            st = state[s]
            n = s.recv_into(mv)
            if st["left"] is None:
                st["head"] += bytes(mv[:n])
                if b"\r\n\r\n" in st["head"]:
                    head, body = st["head"].split(b"\r\n\r\n", 1)
                    st["status"] = int(head[9:12])
                    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                    st["left"] = int(m.group(1)) if m else None
                    if st["left"] is None:
                        st["left"] = float("inf")
                    st["left"] -= len(body)
                    total += len(body)
                    st["head"] = b""
            else:
                st["left"] -= n
                total += n
            if n == 0 or (st["left"] is not None and st["left"] <= 0):
                statuses.append(st["status"])
                sel.unregister(s)
                s.close()
                del state[s]
        if time.monotonic() - t0 > 900:
            raise BenchError("whole-file fetch took over 15 minutes")
    wall = time.monotonic() - t0
    return {"wall_s": wall, "bytes": total, "statuses": statuses}


async def _storm(port, n, salt):
    async def one(i):
        mac = "0a:%02x:%02x:%02x:%02x:%02x" % (salt, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
        req = f"GET /ipxe?mac={mac}&serial=STORM{salt:02x}{i:07d} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(req.encode())
        data = await r.read()
        w.close()
        return time.monotonic(), int(data[9:12]) if len(data) >= 12 else 0

    t0 = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    return t0, results


def storm(port, n, salt):
    """`n` new machines at once: n connections, each a first-boot `/ipxe?mac=&serial=`."""
    t0, results = asyncio.run(_storm(port, n, salt))
    last = max(t for t, _ in results)
    bad = [s for _, s in results if s != 200]
    return t0, last - t0, bad


def wrk(url, conns, threads, secs, script="report.lua", headers=(), args=()):
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{secs}s", "--timeout", "30s",
           "-s", os.path.join(HERE, script)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    line = next((l for l in out.stdout.splitlines() if l.startswith("JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary: {out.stdout}{out.stderr}")
    r = json.loads(line[5:])
    r["secs"] = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / r["secs"]
    r["mbps"] = r["bytes"] / r["secs"] / MB
    r["errors_total"] = sum(r["errors"].values())
    return r


# --- disk baselines -----------------------------------------------------------------------


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def baseline_files_git(folder, n, body):
    """n files each written and fsynced, then one `git add -A && git commit`."""
    os.makedirs(folder)
    subprocess.run(["git", "init", "-q", folder], check=True)
    t0 = time.monotonic()
    for i in range(n):
        fd = os.open(os.path.join(folder, f"m{i:06d}.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, body)
        os.fsync(fd)
        os.close(fd)
    fsync_dir(folder)
    git = ["git", "-C", folder, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "bench"], check=True)
    return time.monotonic() - t0


def baseline_grouped(folder, n, body):
    """n files written, then synced as a group and one directory fsync: one syncfs, or an
    fsync of each file after all are written (a group commit's floor). Returns both times."""
    times = {}
    for how in ("syncfs", "fsync_each"):
        d = f"{folder}-{how}"
        os.makedirs(d)
        t0 = time.monotonic()
        fds = []
        for i in range(n):
            fd = os.open(os.path.join(d, f"m{i:06d}.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, body)
            fds.append(fd)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if how == "syncfs":
                if LIBC.syncfs(dfd) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs")
            else:
                for fd in fds:
                    os.fsync(fd)
            os.fsync(dfd)
        finally:
            os.close(dfd)
            for fd in fds:
                os.close(fd)
        times[how] = time.monotonic() - t0
        shutil.rmtree(d)
    return times


def baseline_durable_rate(folder, secs, body):
    """One thread: write a temp file, fsync, rename into place, fsync the folder; per second."""
    os.makedirs(folder)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < secs:
        tmp = os.path.join(folder, f".m{n:07d}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, body)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(folder, f"m{n:07d}.json"))
        fsync_dir(folder)
        n += 1
    return n / (time.monotonic() - t0)


def baseline_read_files(folder):
    t0 = time.monotonic()
    total = 0
    for name in os.listdir(folder):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                total += len(f.read())
    return time.monotonic() - t0


# --- fixtures -----------------------------------------------------------------------------


def machine_mac(i):
    return "52:54:%02x:%02x:%02x:%02x" % tuple(i.to_bytes(4, "big"))


def machine_file(i, now):
    """One machine file as mayu writes it (`files::encode`: pretty JSON, newline)."""
    mac = machine_mac(i)
    mid = mac.replace(":", "-")
    phases = {p: None for p in ("first_seen", "dhcp", "ipxe", "kernel", "initrd", "config", "disk_boot", "boot_complete")}
    phases.update(first_seen=now, ipxe=now, kernel=now, initrd=now, boot_complete=now)
    m = {
        "id": mid,
        "macs": [mac],
        "uuid": f"4c4c4544-0000-1000-8000-{i:012x}",
        "serial": f"SN{i:06d}",
        "arch": "x86_64",
        "hostname": f"node-{i}",
        "ip": None,
        "profile": "worker",
        "assigned_by": {"by": "rule"},
        "pinned": False,
        "state": "running",
        "reinstall": False,
        "installed": False,
        "phases": phases,
        "overrides": {},
        "ipmi_addr": None,
        "provider_id": None,
        "rack": None,
        "facts": {
            "cpus": 32,
            "cpu_model": "Bench CPU @ 2.00GHz",
            "memory_bytes": 137438953472,
            "disks": [{"name": "sda", "size_bytes": 960197124096}],
            "nics": [],
            "vendor": "Bench",
            "product": "B-1",
        },
        "notes": "",
    }
    return mid, (json.dumps(m, indent=2) + "\n").encode()


def write_inventory(folder, n):
    os.makedirs(folder)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i in range(n):
        mid, body = machine_file(i, now)
        with open(os.path.join(folder, f"{mid}.json"), "wb") as f:
            f.write(body)


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            f.write(chunk)
            left -= len(chunk)


def journal_last_seq(inv):
    path = os.path.join(inv, ".git", "mayu-journal")
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def head_seq(inv):
    out = subprocess.run(["git", "-C", inv, "log", "-1", "--format=%B"], capture_output=True, text=True, check=False)
    m = re.findall(r"(?m)^Mayu-Seq: (\d+)", out.stdout)
    return int(m[-1]) if m else None


def head_files(inv):
    out = subprocess.run(["git", "-C", inv, "ls-tree", "--name-only", "HEAD"], capture_output=True, text=True, check=False)
    return sum(1 for l in out.stdout.splitlines() if l.endswith(".json"))


def audit_caught_up(inv, files):
    """Everything journalled is in HEAD (its Mayu-Seq trailer) and HEAD holds `files` machines."""
    if head_files(inv) < files:
        return False
    j = journal_last_seq(inv)
    if j is None:
        return True
    h = head_seq(inv)
    return h is not None and h >= j


def wait_committed(inv, files, timeout, poll=0.05):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if audit_caught_up(inv, files):
            return time.monotonic()
        time.sleep(poll)
    return None


# --- servers ------------------------------------------------------------------------------


class Run:
    def __init__(self, tmp, size):
        self.tmp = tmp
        self.size = size
        self.pids_file = os.path.join(tmp or ".", "pids")
        self.serial = 0
        self.instances = []

    def note_pid(self, pid):
        with open(self.pids_file, "a") as f:
            f.write(f"{pid}\n")


class Mayu:
    def __init__(self, run, binary, label, name, inventory_from=None, quantity=1_000_000):
        run.serial += 1
        self.run = run
        self.binary = binary
        self.label = label
        self.dir = os.path.join(run.tmp, f"{name}-{label}-{run.serial}")
        self.inv = os.path.join(self.dir, "inventory")
        os.makedirs(self.dir)
        if inventory_from:
            shutil.copytree(inventory_from, self.inv, symlinks=True)
        self.boot = free_port()
        self.api = free_port()
        self.proc = None
        run.instances.append(self)
        with open(os.path.join(self.dir, "config.yaml"), "w") as f:
            f.write(
                "network: { address: 10.77.0.1, dhcp: { mode: off } }\n"
                f'http: {{ boot: "127.0.0.1:{self.boot}", api: "127.0.0.1:{self.api}",'
                " max_boot_connections: 4096, max_api_connections: 1024 }\n"
                f"inventory: {self.inv}\n"
                f"logs: {os.path.join(self.dir, 'logs')}\n"
                f"templates: {os.path.join(run.tmp, 'templates')}\n"
                f"images: {os.path.join(run.tmp, 'images')}\n"
                f"tftproot: {os.path.join(self.dir, 'tftproot')}\n"
                "audit: { git: true }\n"
                "assignment: auto\n"
                "default_profile: discovery\n"
                "profiles:\n"
                f'  - {{ name: worker, quantity: {quantity}, image: x, kernel_args: "console=ttyS0",'
                " templates: { ipxe: x.ipxe } }\n"
                '  - { name: discovery, image: x, kernel_args: "console=ttyS0", templates: { ipxe: x.ipxe } }\n'
            )

    def start(self, machines=None, timeout=600):
        """Starts and waits until /readyz answers 200; returns the seconds that took."""
        logf = open(os.path.join(self.dir, "mayu.log"), "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "--config", os.path.join(self.dir, "config.yaml"), "--headless"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        logf.close()
        self.run.note_pid(self.proc.pid)
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"mayu ({self.label}) exited {self.proc.returncode}; see {self.dir}/mayu.log:\n" + self.tail())
            try:
                status, _, body = get(self.api, "/readyz", timeout=5)
                if status == 200:
                    n = json.loads(body).get("machines")
                    if machines is not None and n != machines:
                        raise BenchError(f"mayu ({self.label}) loaded {n} machines, expected {machines}:\n" + self.tail())
                    break
            except (ConnectionError, OSError, http.client.HTTPException):
                pass
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"mayu ({self.label}) not ready after {timeout} s:\n" + self.tail())
            time.sleep(0.005)
        took = time.monotonic() - t0
        with open(os.path.join(self.dir, "tokens.json.admin")) as f:
            self.token = f.read().strip()
        return took

    def tail(self):
        try:
            with open(os.path.join(self.dir, "mayu.log"), "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, wait):
        """SIGTERM (a graceful stop flushes the audit); SIGKILL after `wait` s. Returns the
        seconds the graceful stop took, or None when it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(wait)
            took = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            took = None
        self.proc = None
        return took

    @property
    def pid(self):
        return self.proc.pid

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}


class Nginx:
    def __init__(self, run, root):
        self.dir = os.path.join(run.tmp, "nginx")
        os.makedirs(self.dir)
        self.port = free_port()
        user = "user root root;" if os.geteuid() == 0 else ""
        with open(os.path.join(HERE, "nginx.conf.in")) as f:
            conf = f.read()
        conf = conf.replace("@DIR@", self.dir).replace("@PORT@", str(self.port)).replace("@ROOT@", root).replace("@USER@", user)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        logf = open(os.path.join(self.dir, "nginx.out"), "ab")
        self.proc = subprocess.Popen(
            ["nginx", "-p", self.dir, "-e", os.path.join(self.dir, "nginx-error.log"), "-c", self.conf],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        logf.close()
        run.note_pid(self.proc.pid)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                with open(os.path.join(self.dir, "nginx.out"), "rb") as f:
                    raise BenchError("nginx exited: " + f.read().decode(errors="replace"))
            try:
                get(self.port, "/nothing-here", timeout=2)
                break
            except OSError:
                if time.monotonic() - t0 > 30:
                    raise BenchError("nginx did not answer within 30 s")
                time.sleep(0.05)
        self.workers = children(self.proc.pid)
        for w in self.workers:
            run.note_pid(w)

    def pids(self):
        return [self.proc.pid, *self.workers]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for w in self.workers:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- the rows -----------------------------------------------------------------------------

# key, title, unit kind, how the ratio reads, target text, target check (on the medians)
ROWS = [
    ("whole", "{clients} clients each fetch a whole {initrd_mib} MiB initrd (wall time)", "s", "ref/mayu",
     "≥ 0.9× nginx", lambda r: r["ratio"] >= 0.9),
    ("aggregate", "the same, aggregate MB/s over {secs} s", "MB/s", "mayu/ref",
     "≥ 0.9× nginx", lambda r: r["ratio"] >= 0.9),
    ("range", "{range_size} Range request, median latency (1 client)", "ms", "ref/mayu",
     "≥ 0.9× nginx (\"Range without penalty\")", lambda r: r["ratio"] >= 0.9),
    ("ipxe", "`/ipxe` for a known machine, rps", "rps", "mayu/ref",
     "≥ 0.8× nginx", lambda r: r["ratio"] >= 0.8),
    ("boot", "`/boot.ipxe`, rps", "rps", "mayu/ref", "— (reference row)", None),
    ("storm_answered", "{storm:,} new machines at once: all answered", "s", "ref/mayu",
     "< 2 s and ≥ 0.8× the issue's baseline", lambda r: r["mayu"] < 2 and r["ratio"] >= 0.8),
    ("storm_committed", "the same: all committed to git (from the first request)", "s", "ref/mayu",
     "≤ 2 s after the last answer", lambda r: r["extra"] <= 2),
    ("continuous", "new machines under continuous load, registrations/s", "rps", "mayu/ref",
     "≥ 0.8× durable-write rate", lambda r: r["ratio"] >= 0.8),
    ("list", "`GET /api/v1/machines`, {big:,} machines, median latency (1 client)", "ms", "ref/mayu",
     "≤ 3× nginx (ratio ≥ 0.33)", lambda r: r["ratio"] >= 1 / 3),
    ("noid", "an asset ({kernel_kib} KiB) fetched without `?id=`, {big:,} machines, rps", "rps", "mayu/ref",
     "found by index: ≥ 0.8× the 11-machine rate", lambda r: r["ratio"] >= 0.8),
    ("rss", "RSS with {big:,} machines after list calls", "MB", "ref/mayu",
     "< 150 MB", lambda r: r["mayu"] < 150),
    ("startup", "start-up with {big:,} machines (until /readyz)", "s", "ref/mayu",
     "< 1 s", lambda r: r["mayu"] < 1),
]
ROW = {r[0]: r for r in ROWS}


class Results:
    def __init__(self):
        # label -> key -> list of {"mayu", "ref", "ratio", "extra", "notes"}
        self.data = {}
        self.cpu = {}

    def add(self, label, key, mayu, ref, extra=None, **notes):
        how = ROW[key][3]
        ratio = (ref / mayu if mayu else float("inf")) if how == "ref/mayu" else (mayu / ref if ref else float("inf"))
        entry = {"mayu": mayu, "ref": ref, "ratio": ratio, "extra": extra, **notes}
        self.data.setdefault(label, {}).setdefault(key, []).append(entry)
        log(f"  {label:>10} {key:<16} mayu {fmt(key, mayu):>10}  ref {fmt(key, ref):>10}  ratio {ratio:.3f}"
            + (f"  extra {extra:.3f}" if extra is not None else ""))

    def add_cpu(self, label, key, mayu_per, ref_per, unit):
        self.cpu.setdefault(label, {}).setdefault(key, []).append((mayu_per, ref_per, unit))

    def median(self, label, key):
        rows = self.data.get(label, {}).get(key)
        if not rows:
            return None
        med = lambda k: statistics.median(r[k] for r in rows)
        extra = [r["extra"] for r in rows if r["extra"] is not None]
        return {"mayu": med("mayu"), "ref": med("ref"), "ratio": med("ratio"),
                "extra": statistics.median(extra) if extra else None, "runs": len(rows)}


def fmt(key, v):
    if v is None:
        return "—"
    unit = ROW[key][2]
    if unit == "s":
        if v < 1:
            return f"{v * 1000:.0f} ms"
        return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms"
    if unit == "rps":
        return f"{v / 1000:.1f}k" if v >= 10_000 else f"{v:.0f}"
    if unit in ("MB/s", "MB"):
        return f"{v:.0f} {unit}"
    return f"{v:.3g}"


REF_NAMES = {
    "whole": "nginx", "aggregate": "nginx", "range": "nginx", "ipxe": "nginx, same bytes",
    "boot": "nginx, same bytes", "storm_answered": "{storm:,} files each written+fsynced, then `git add -A && git commit` (the issue's baseline; the disk alone, all files synced as one group, is in the JSON as `grouped`)",
    "storm_committed": "{storm:,} files each written+fsynced, then `git add -A && git commit`",
    "continuous": "write+fsync+rename+dir-fsync, 1 thread",
    "list": "nginx, same body", "noid": "same, {small} machines", "rss": "same, {small} machines",
    "startup": "reading the {big:,} files' bytes",
}


class Bench:
    def __init__(self, args):
        self.args = args
        self.s = SMOKE if args.smoke else FULL
        self.run = Run(args.tmp, self.s)
        self.res = Results()
        self.loads = []
        self.binaries = []
        self.only = BLOCKS if not getattr(args, "only", None) else tuple(args.only.split(","))
        for name in self.only:
            if name not in BLOCKS:
                raise SystemExit(f"--only: unknown block `{name}`; blocks: {', '.join(BLOCKS)}")
        if "big" in self.only and "small" not in self.only:
            raise SystemExit("--only big needs small too (its references are measured there)")
        if args.before:
            self.binaries.append((args.before_label, os.path.abspath(args.before)))
        if args.now:
            self.binaries.append((args.now_label, os.path.abspath(args.now)))
        self.salt = 0

    # fixtures shared by every instance
    def prepare(self):
        s, tmp = self.s, self.args.tmp
        log(f"fixtures in {tmp}")
        images = os.path.join(tmp, "images", "x")
        os.makedirs(images)
        write_random(os.path.join(images, "initrd.img"), s["initrd"])
        write_random(os.path.join(images, "vmlinuz"), s["kernel"])
        os.makedirs(os.path.join(tmp, "templates"))
        shutil.copy(os.path.join(REPO, "templates", "discovery.ipxe"), os.path.join(tmp, "templates", "x.ipxe"))
        self.www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(self.www, "assets", "x"))
        for f in ("initrd.img", "vmlinuz"):  # hard links: the very same page cache
            os.link(os.path.join(images, f), os.path.join(self.www, "assets", "x", f))
        self.small_inv = os.path.join(tmp, "fixture-small")
        write_inventory(self.small_inv, s["small"])
        self.big_inv = os.path.join(tmp, "fixture-big")
        write_inventory(self.big_inv, s["big"])
        self.machine_body = machine_file(0, "2025-01-01T00:00:00Z")[1]
        self.nginx = Nginx(self.run, self.www)

    def check(self, what, status, body, want_status, want_len=None):
        if status != want_status or (want_len is not None and len(body) != want_len):
            raise BenchError(f"{what}: answered {status} with {len(body)} bytes, expected {want_status}"
                             + (f" with {want_len}" if want_len is not None else ""))

    def both(self, rnd, mayu_fn, ref_fn):
        """Measures mayu and the reference back to back, the order alternating by round."""
        if rnd % 2 == 0:
            return mayu_fn(), ref_fn()
        ref = ref_fn()
        return mayu_fn(), ref

    def wrk_checked(self, what, *a, **k):
        r = wrk(*a, **k)
        if r["errors_total"]:
            msg = f"{what}: wrk counted errors {r['errors']}"
            if self.args.smoke:
                raise BenchError(msg)
            log("warning: " + msg)
        if r["requests"] == 0 and r["bytes"] == 0:
            raise BenchError(f"{what}: wrk completed nothing")
        return r

    # -- block A: 11 machines: assets, /ipxe, /boot.ipxe, the 11-machine references ----------
    def block_small(self, rnd, label, binary):
        s = self.s
        m = Mayu(self.run, binary, label, "small", inventory_from=self.small_inv)
        m.start(machines=s["small"])
        wait_committed(m.inv, s["small"], 120)
        ng = self.nginx
        mb, nb = f"http://127.0.0.1:{m.boot}", f"http://127.0.0.1:{ng.port}"
        asset = "/assets/x/initrd.img"
        # correctness first: the same bytes from both
        st, _, body = get(m.boot, asset + "?id=" + machine_mac(0).replace(":", "-"))
        self.check("mayu asset", st, body, 200, s["initrd"])
        st, _, body = get(ng.port, asset)
        self.check("nginx asset", st, body, 200, s["initrd"])
        a, b = s["initrd"] // 2, s["initrd"] // 2 + s["range_len"] - 1
        rng = f"bytes={a}-{b}"
        for port, who in ((m.boot, "mayu"), (ng.port, "nginx")):
            st, _, body = get(port, asset, {"Range": rng})
            self.check(f"{who} Range", st, body, 206, s["range_len"])
        known = f"/ipxe?mac={machine_mac(0)}"
        st, _, ipxe_body = get(m.boot, known)
        self.check("mayu /ipxe (known machine)", st, ipxe_body, 200)
        if b"#!ipxe" not in ipxe_body or b"kernel" not in ipxe_body:
            raise BenchError(f"mayu /ipxe for the known machine is not its profile script: {ipxe_body[:300]!r}")
        ipxe_file = f"ipxe-{label}.ipxe"
        with open(os.path.join(self.www, ipxe_file), "wb") as f:
            f.write(ipxe_body)
        st, _, boot_body = get(m.boot, "/boot.ipxe")
        self.check("mayu /boot.ipxe", st, boot_body, 200)
        boot_file = f"boot-{label}.ipxe"
        with open(os.path.join(self.www, boot_file), "wb") as f:
            f.write(boot_body)
        for path, n in ((ipxe_file, len(ipxe_body)), (boot_file, len(boot_body))):
            st, _, body = get(ng.port, "/" + path)
            self.check(f"nginx /{path}", st, body, 200, n)

        # 32 clients, whole file
        def whole(port, pids):
            c0 = cpu_seconds(pids)
            r = whole_fetch(port, asset, s["clients"])
            if any(x != 200 for x in r["statuses"]) or r["bytes"] != s["clients"] * s["initrd"]:
                raise BenchError(f"whole-file fetch: statuses {set(r['statuses'])}, {r['bytes']} bytes")
            r["cpu"] = cpu_seconds(pids) - c0
            return r

        mw, nw = self.both(rnd, lambda: whole(m.boot, [m.pid]), lambda: whole(ng.port, ng.pids()))
        self.res.add(label, "whole", mw["wall_s"], nw["wall_s"])

        def agg(url, pids):
            c0 = cpu_seconds(pids)
            r = self.wrk_checked("aggregate", url + asset, s["clients"], s["threads"], s["secs"])
            r["cpu"] = cpu_seconds(pids) - c0
            return r

        ma, na = self.both(rnd, lambda: agg(mb, [m.pid]), lambda: agg(nb, ng.pids()))
        self.res.add(label, "aggregate", ma["mbps"], na["mbps"])
        self.res.add_cpu(label, "aggregate", ma["cpu"] / (ma["bytes"] / 1e9), na["cpu"] / (na["bytes"] / 1e9), "CPU s per GB")

        mr, nr = self.both(
            rnd,
            lambda: self.wrk_checked("range", mb + asset, 1, 1, s["short_secs"], headers=[f"Range: {rng}"]),
            lambda: self.wrk_checked("range", nb + asset, 1, 1, s["short_secs"], headers=[f"Range: {rng}"]))
        self.res.add(label, "range", mr["latency_us"]["p50"] / 1000, nr["latency_us"]["p50"] / 1000)

        def rps(url, pids, what):
            c0 = cpu_seconds(pids)
            r = self.wrk_checked(what, url, s["conns"], s["threads"], s["secs"])
            r["cpu"] = cpu_seconds(pids) - c0
            return r

        mi, ni = self.both(rnd, lambda: rps(mb + known, [m.pid], "/ipxe"), lambda: rps(f"{nb}/{ipxe_file}", ng.pids(), "nginx ipxe"))
        self.res.add(label, "ipxe", mi["rps"], ni["rps"], body_bytes=len(ipxe_body))
        self.res.add_cpu(label, "ipxe", mi["cpu"] / mi["requests"] * 1e6, ni["cpu"] / ni["requests"] * 1e6, "CPU µs per request")
        mo, no = self.both(rnd, lambda: rps(mb + "/boot.ipxe", [m.pid], "/boot.ipxe"), lambda: rps(f"{nb}/{boot_file}", ng.pids(), "nginx boot"))
        self.res.add(label, "boot", mo["rps"], no["rps"], body_bytes=len(boot_body))
        self.res.add_cpu(label, "boot", mo["cpu"] / mo["requests"] * 1e6, no["cpu"] / no["requests"] * 1e6, "CPU µs per request")

        # references for the 10,000-machine rows: the same requests at 11 machines
        r = self.wrk_checked("asset without id (11)", mb + "/assets/x/vmlinuz", s["clients"], s["threads"], s["secs"])
        self.small_noid = r["rps"]
        self.wrk_checked("list (11)", f"http://127.0.0.1:{m.api}/api/v1/machines", 1, 1, s["short_secs"],
                         headers=[f"Authorization: Bearer {m.token}"])
        self.small_rss = rss_mb(m.pid)
        m.stop(s["stop_wait"])

    # -- block S: 1,000 new machines at once -----------------------------------------------
    def block_storm(self, rnd, label, binary):
        s = self.s
        n = s["storm"]
        base = os.path.join(self.args.tmp, f"baseline-{label}-{rnd}")
        per_file = baseline_files_git(base + "-git", n, self.machine_body)
        groups = baseline_grouped(base + "-grouped", n, self.machine_body)
        grouped = min(groups.values())
        shutil.rmtree(base + "-git")
        m = Mayu(self.run, binary, label, "storm")
        m.start(machines=0)
        wait_committed(m.inv, 0, 60)
        self.salt += 1
        t0, answered, bad = storm(m.boot, n, self.salt % 256)
        if bad:
            raise BenchError(f"storm: {len(bad)} of {n} registrations failed, statuses {sorted(set(bad))}")
        done = wait_committed(m.inv, n, 900 if not self.args.smoke else 120)
        if done is None:
            raise BenchError(f"storm: not all {n} machines committed to git within the wait")
        committed = done - t0
        self.res.add(label, "storm_answered", answered, per_file, grouped=grouped, **groups)
        self.res.add(label, "storm_committed", committed, per_file, extra=committed - answered, grouped=grouped)
        m.stop(s["stop_wait"])

    # -- block L: new machines under continuous load ---------------------------------------
    def block_continuous(self, rnd, label, binary):
        s = self.s
        rate = baseline_durable_rate(os.path.join(self.args.tmp, f"durable-{label}-{rnd}"), s["short_secs"], self.machine_body)
        shutil.rmtree(os.path.join(self.args.tmp, f"durable-{label}-{rnd}"))
        m = Mayu(self.run, binary, label, "load")
        m.start(machines=0)
        self.salt += 1
        r = self.wrk_checked("continuous registrations", f"http://127.0.0.1:{m.boot}/ipxe", s["conns"], s["threads"], s["secs"],
                             script="register.lua", args=[str(self.salt % 256)])
        # A graceful stop flushes the audit; how long that takes is noted (None: killed after
        # load_stop_wait s, its records safe in the journal).
        stopped = m.stop(s["load_stop_wait"])
        self.res.add(label, "continuous", r["rps"], rate, p99_ms=r["latency_us"]["p99"] / 1000,
                     graceful_stop_s=stopped)

    # -- block C: 10,000 machines ----------------------------------------------------------
    def big_instance(self, label, binary):
        if not hasattr(self, "big"):
            self.big = {}
        if label not in self.big:
            m = Mayu(self.run, binary, label, "big", inventory_from=self.big_inv)
            log(f"  {label}: first start with {self.s['big']} machines (commits them to git; not timed)")
            m.start(machines=self.s["big"], timeout=1800)
            if wait_committed(m.inv, self.s["big"], 1800) is None:
                raise BenchError("the 10,000-machine inventory was not committed to git")
            m.stop(300)
            self.big[label] = m
        return self.big[label]

    def block_big(self, rnd, label, binary):
        s = self.s
        m = self.big_instance(label, binary)
        read = baseline_read_files(m.inv)
        took = m.start(machines=s["big"])
        self.res.add(label, "startup", took, read)
        ng = self.nginx
        api = f"http://127.0.0.1:{m.api}/api/v1/machines"
        st, _, body = get(m.api, "/api/v1/machines", m.auth())
        self.check("mayu list", st, body, 200)
        listed = json.loads(body)
        count = len(listed) if isinstance(listed, list) else len(listed.get("machines", listed))
        if count != s["big"]:
            raise BenchError(f"mayu list: {count} machines, expected {s['big']}")
        list_file = f"machines-{label}.json"
        with open(os.path.join(self.www, list_file), "wb") as f:
            f.write(body)
        ml, nl = self.both(
            rnd,
            lambda: self.wrk_checked("list", api, 1, 1, s["secs"], headers=[f"Authorization: Bearer {m.token}"]),
            lambda: self.wrk_checked("nginx list", f"http://127.0.0.1:{ng.port}/{list_file}", 1, 1, s["secs"]))
        self.res.add(label, "list", ml["latency_us"]["p50"] / 1000, nl["latency_us"]["p50"] / 1000, body_bytes=len(body))
        rss = rss_mb(m.pid)
        st, _, body = get(m.boot, "/assets/x/vmlinuz")
        self.check("mayu asset without id", st, body, 200, s["kernel"])
        r = self.wrk_checked("asset without id", f"http://127.0.0.1:{m.boot}/assets/x/vmlinuz", s["clients"], s["threads"], s["secs"])
        self.res.add(label, "noid", r["rps"], self.small_noid)
        self.res.add(label, "rss", rss, self.small_rss)
        m.stop(s["stop_wait"])

    def main(self):
        self.loads.append(("start", loadavg()))
        self.prepare()
        for rnd in range(self.s["rounds"]):
            order = self.binaries if rnd % 2 == 0 else list(reversed(self.binaries))
            for label, binary in order:
                log(f"round {rnd + 1}/{self.s['rounds']}: {label} ({binary})")
                for name in BLOCKS:
                    if name in self.only:
                        getattr(self, f"block_{name}")(rnd, label, binary)
            self.loads.append((f"after round {rnd + 1}", loadavg()))
        self.nginx.stop()


# --- the report ---------------------------------------------------------------------------


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, shell=True).stdout.strip()
    except OSError:
        return ""


def machine_info(tmp):
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    mount = " ".join(sh(f"findmnt -no SOURCE,FSTYPE,OPTIONS --target {tmp}").split())
    src = mount.split()[0] if mount else ""
    disk = sh(f"lsblk -dno NAME,SIZE,ROTA,MODEL $(lsblk -no PKNAME {src} 2>/dev/null | head -1 | sed 's|^|/dev/|') 2>/dev/null") or sh(f"lsblk -dno NAME,SIZE,ROTA,MODEL {src} 2>/dev/null")
    parts = disk.split(None, 3)
    if len(parts) >= 3:
        disk = f"{parts[0]}, {parts[1]}, rotational={parts[2]}" + (f", {parts[3]}" if len(parts) > 3 else "")
    return {
        "cpu": model, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
        "fs": mount, "disk": " ".join(disk.split()), "nginx": sh("nginx -v 2>&1"),
        "wrk": sh("wrk --version 2>&1 | head -1"), "python": platform.python_version(),
    }


def names(s):
    rl = s["range_len"]
    return dict(s, initrd_mib=s["initrd"] // MIB, kernel_kib=s["kernel"] // 1024,
                range_size=f"{rl // MIB} MiB" if rl % MIB == 0 else f"{rl // 1024} KiB")


def report(bench, info, smoke, when):
    res, labels = bench.res, [l for l, _ in bench.binaries]
    s = bench.s
    lines = []
    title = "Smoke run (tiny sizes, one round: proves the script works; the numbers mean nothing)" if smoke else "Results"
    lines.append(f"## {title}\n")
    lines.append(f"Measured {when} by `scripts/bench.sh`"
                 + "".join(f"; **{l}** = `{b}`" for l, b in bench.binaries) + ".\n")
    lines.append(f"- machine: {info['cores']} cores, {info['cpu']}, {info['memory']} RAM; kernel {info['kernel']}")
    lines.append(f"- disk/filesystem of the run folder: {info['fs']} ({info['disk'] or 'device unknown'})")
    lines.append(f"- load clients: {info['wrk']}; Python {info['python']} (stdlib clients); reference: {info['nginx']}")
    lines.append(f"- rounds: {s['rounds']}; initrd {s['initrd'] // MIB} MiB; {s['clients']} clients; "
                 f"{s['secs']} s wrk runs ({s['conns']} connections, {s['threads']} wrk threads); storm {s['storm']:,}; "
                 f"{s['big']:,} machines")
    lines.append("- load average: " + "; ".join(f"{w} {v}" for w, v in bench.loads) + "\n")
    head = "| measure | reference | " + " | ".join(f"{l}: mayu | {l}: reference | {l}: ratio" for l in labels) + " | target | " + " | ".join(f"met ({l})" for l in labels) + " |"
    lines.append(head)
    lines.append("|" + "---|" * (3 + 3 * len(labels) + len(labels)))
    for key, title, _, _, target, ok in ROWS:
        cells = [title.format(**names(s)), REF_NAMES[key].format(**names(s))]
        mets = []
        for l in labels:
            r = res.median(l, key)
            if r is None:
                cells += ["—", "—", "—"]
                mets.append("—")
                continue
            ratio = f"{r['ratio']:.2f}"
            if key == "storm_committed":
                ratio += f"; {r['extra']:.2f} s after the last answer"
            if key == "continuous":
                p99 = statistics.median(x["p99_ms"] for x in res.data[l][key])
                ratio += f"; p99 {p99:.0f} ms"
            cells += [fmt(key, r["mayu"]), fmt(key, r["ref"]), ratio]
            mets.append("—" if ok is None else ("yes" if ok(r) else "**no**"))
        cells.append(target)
        cells += mets
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Ratios are mayu's speed as a fraction of the reference (reference time ÷ mayu time, or "
                 "mayu rate ÷ reference rate): 1.00 is as fast, higher is better; each is the median of the "
                 "per-round ratios. Values are medians over the rounds.\n")
    # CPU per unit of work
    lines.append("CPU per unit of work (server process(es) only, utime+stime from /proc, median):\n")
    lines.append("| measure | " + " | ".join(f"{l}: mayu | {l}: nginx | {l}: ×" for l in labels) + " |")
    lines.append("|" + "---|" * (1 + 3 * len(labels)))
    for key in ("aggregate", "ipxe", "boot"):
        cells = [ROW[key][1].format(**names(s))]
        unit = ""
        for l in labels:
            v = res.cpu.get(l, {}).get(key)
            if not v:
                cells += ["—"] * 3
                continue
            mm = statistics.median(x[0] for x in v)
            nn = statistics.median(x[1] for x in v)
            unit = v[0][2]
            cells += [f"{mm:.2f}", f"{nn:.2f}", f"{mm / nn:.1f}×" if nn else "—"]
        cells[0] += f" ({unit})"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    # every round's numbers
    lines.append("<details><summary>Every round</summary>\n")
    lines.append("| measure | binary | round | mayu | reference | ratio | notes |")
    lines.append("|---|---|---|---|---|---|---|")
    for key, title, *_ in ROWS:
        for l in labels:
            for i, r in enumerate(res.data.get(l, {}).get(key, []), 1):
                notes = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in r.items() if k not in ("mayu", "ref", "ratio") and v is not None)
                lines.append(f"| {key} | {l} | {i} | {fmt(key, r['mayu'])} | {fmt(key, r['ref'])} | {r['ratio']:.3f} | {notes} |")
    lines.append("\n</details>\n")
    return "\n".join(lines)


def write_out(path, section, name=None):
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    else:
        with open(os.path.join(HERE, "BENCHMARKS.template.md")) as f:
            text = f.read()
    begin, end = (BEGIN, END) if name is None else (f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->")
    if begin not in text or end not in text:
        raise BenchError(f"{path} has no `{begin}` … `{end}` markers to rewrite between")
    pre, rest = text.split(begin, 1)
    post = rest.split(end, 1)[1]
    with open(path + ".tmp", "w") as f:
        f.write(pre + begin + "\n" + section + "\n" + end + post)
    os.replace(path + ".tmp", path)


def rerender(args):
    with open(args.from_json) as f:
        saved = json.load(f)
    bench = Bench(args)
    bench.binaries = [tuple(b) for b in saved["binaries"]]
    bench.loads = [tuple(x) for x in saved["loads"]]
    bench.s = saved["sizes"]
    bench.res.data = saved["results"]
    # Runs saved before the storm's reference became the issue's own baseline (1,000 fsynced
    # files + one git commit) kept it beside the grouped-sync figure: use it.
    for rows in bench.res.data.values():
        for r in rows.get("storm_answered", []):
            if "files_fsync_git" in r:
                r["grouped"], r["ref"] = r["ref"], r.pop("files_fsync_git")
                r["ratio"] = r["ref"] / r["mayu"] if r["mayu"] else float("inf")
    bench.res.cpu = {l: {k: [tuple(x) for x in v] for k, v in d.items()} for l, d in saved["cpu"].items()}
    section = report(bench, saved["info"], args.smoke, saved.get("measured", "(time not saved)"))
    print(section)
    if args.out:
        write_out(args.out, section)
        log(f"wrote {args.out}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tmp", help="this run's private folder")
    p.add_argument("--now", help="the mayu binary measured as `now`")
    p.add_argument("--now-label", default="now")
    p.add_argument("--before", help="a second mayu binary, measured as `before`")
    p.add_argument("--before-label", default="before")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--out", help="rewrite the results section of this Markdown file")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--from-json", help="measure nothing: rewrite the report from a --json file")
    p.add_argument("--only", help=f"comma-separated blocks to measure ({', '.join(BLOCKS)}; default all)")
    p.add_argument("--section", help="with --out: rewrite between <!-- bench:NAME:begin/end --> instead")
    args = p.parse_args()
    if args.from_json:
        return rerender(args)
    if not args.tmp or not args.now:
        p.error("--tmp and --now are needed to measure")

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    bench = Bench(args)
    if args.rounds:
        bench.s = dict(bench.s, rounds=args.rounds)
        bench.run.size = bench.s
    try:
        bench.main()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        for m in bench.run.instances:
            m.stop(10)
        if hasattr(bench, "nginx"):
            bench.nginx.stop()
    info = machine_info(args.tmp)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = report(bench, info, args.smoke, when)
    print(section)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"measured": when, "info": info, "binaries": bench.binaries, "loads": bench.loads, "results": bench.res.data,
                       "cpu": bench.res.cpu, "sizes": bench.s}, f, indent=1)
    if args.out:
        write_out(args.out, section, args.section)
        log(f"wrote {args.out}")
    if args.smoke and not args.only:
        missing = [(l, k) for l, _ in bench.binaries for k in ROW if bench.res.median(l, k) is None]
        if missing:
            log(f"FAILED: no number for {missing}")
            return 1
        log("smoke: every measure produced a number")
    return 0


if __name__ == "__main__":
    sys.exit(main())
