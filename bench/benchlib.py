"""Helpers shared by the Python parts of the bench scripts (loopback only)."""
import signal, socket, subprocess, time


def free_port():
    """A port that was free on 127.0.0.1 a moment ago."""
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait(what, pred, limit=30.0, every=0.005):
    """Polls pred until it returns something true; exits the bench after `limit` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = pred()
        if v: return v
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def wrk_failures(out):
    """(requests, failed) from wrk's summary: non-2xx/3xx answers plus socket errors."""
    import re
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m: bad += sum(int(x) for x in m.groups())
    return reqs, bad


def kill_by_env(entry):
    """SIGKILLs every process (but this one) whose environment holds `entry` (b"KEY=value"):
    how the benches find instances, which are not their children."""
    import os, signal
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid(): continue
        try: env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError: continue
        if entry in env:
            try: os.kill(int(pid), signal.SIGKILL)
            except OSError: pass


class Etcd:
    """A three-member etcd cluster on loopback ports, data on tmpfs, for the HA benchmarks.
    Members are ended by pid on `stop()`."""

    def __init__(self, work, size=3):
        import subprocess
        self.members = []
        for n in range(size):
            self.members.append({"name": f"e{n}", "client": f"127.0.0.1:{free_port()}",
                                 "peer": f"127.0.0.1:{free_port()}", "dir": f"{work}/etcd-{n}"})
        cluster = ",".join(f"{m['name']}=http://{m['peer']}" for m in self.members)
        self.procs = []
        for m in self.members:
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", m["name"], "--data-dir", m["dir"],
                 "--listen-client-urls", f"http://{m['client']}", "--advertise-client-urls", f"http://{m['client']}",
                 "--listen-peer-urls", f"http://{m['peer']}", "--initial-advertise-peer-urls", f"http://{m['peer']}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "ebb-bench",
                 "--max-txn-ops", "4096", "--log-level", "warn", "--logger", "zap"],
                stdout=subprocess.DEVNULL, stderr=open(f"{work}/etcd-{m['name']}.log", "w")))
        import socket
        def accepting():
            for m in self.members:
                host, port = m["client"].split(":")
                try:
                    socket.create_connection((host, int(port)), timeout=0.2).close()
                except OSError:
                    return False
            return True
        wait("etcd", accepting, 30, every=0.05)

    def url(self):
        return "etcd://" + ",".join(m["client"] for m in self.members)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def stop_all(procs, grace=20):
    """SIGTERM each process still running (the last started first); SIGKILL after `grace` s."""
    for p in reversed([p for p in procs if p is not None]):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try: p.wait(timeout=grace)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
