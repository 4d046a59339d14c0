#!/usr/bin/python3
"""python3-nftables driver for the benchmark: the in-process peer of this library.

Runs inside the benchmark's network namespace (`ip netns exec NS /usr/bin/python3 py-driver.py`), keeps one
`nftables.Nftables()` context and times every call in-process with perf_counter_ns (the pipe to Node is
outside the timed region). One JSON request per line on stdin, one JSON reply per line on stdout:
  {"id", "mode": "text", "text": str, "reps": n}   -> Nftables.cmd(text), n times
  {"id", "mode": "json", "doc": obj, "reps": n}    -> Nftables.json_cmd(doc), n times (json.dumps/loads included)
Reply: {"id", "ok", "ms": [per-call ms], "median": ms, "error"?}
"""
import json
import sys
import time

try:
    import nftables
except Exception as e:  # noqa: BLE001
    sys.stdout.write(json.dumps({"ready": False, "error": "import nftables: %s" % e}) + "\n")
    sys.stdout.flush()
    sys.exit(0)

nft = nftables.Nftables()
nft.set_json_output(False)


def median(xs):
    v = sorted(xs)
    n = len(v)
    if n == 0:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def handle(req):
    reps = int(req.get("reps", 1))
    samples = []
    for _ in range(reps):
        if req["mode"] == "text":
            t0 = time.perf_counter_ns()
            rc, out, err = nft.cmd(req["text"])
            t1 = time.perf_counter_ns()
        elif req["mode"] == "json":
            t0 = time.perf_counter_ns()
            rc, out, err = nft.json_cmd(req["doc"])
            t1 = time.perf_counter_ns()
        else:
            return {"id": req.get("id"), "ok": False, "error": "unknown mode %r" % req["mode"]}
        if rc != 0:
            return {"id": req.get("id"), "ok": False, "error": (err or "rc=%d" % rc)[:2000]}
        samples.append((t1 - t0) / 1e6)
    return {"id": req.get("id"), "ok": True, "ms": samples, "median": median(samples)}


sys.stdout.write(json.dumps({"ready": True, "version": getattr(nftables, "__version__", None)}) + "\n")
sys.stdout.flush()
for line in sys.stdin:
    if not line.strip():
        continue
    try:
        reply = handle(json.loads(line))
    except Exception as e:  # noqa: BLE001
        reply = {"id": None, "ok": False, "error": repr(e)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
