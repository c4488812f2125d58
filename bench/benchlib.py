"""Helpers shared by the Python parts of the bench scripts (loopback only)."""
import socket, time


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
