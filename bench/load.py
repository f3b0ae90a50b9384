"""Load test of the Gradio app: N concurrent gradio_client clients against one app on 127.0.0.1.

The app runs as its own process (`python -m space`), so its resident memory is measured apart from
the clients'. First every distinct request (endpoint x image) is answered alone: those answers
are the reference. Then a warm-up round with every client at once (memory use under concurrency
settles only once the app has served concurrent requests: allocator arenas, thread pools), the
app's RSS, the load (each client sends its requests back to back, cycling /classify, /gradcam
and /scorecam over the images), and the RSS again. Every answer under load is compared with its
reference: a mismatch means a result depended on what else was running (shared hooks, shared
state). Goal on 2 CPU cores with the defaults: 16 clients x 50 requests, 0 errors, 0 mismatches,
RSS growth under 10% after warm-up.

    python -m bench.load --model runs/demo/model              # after `make demo`
    python -m bench.load --model org/her2-resnet50@v2 --clients 8 --requests 20

Requests go only to the app on loopback; the run is bounded by --requests and --time-limit.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from train.synthetic import PATTERNS, make_image

ROOT = Path(__file__).resolve().parents[1]

ENDPOINTS = ("classify", "gradcam", "scorecam")
PROB_TOL = 1e-5    # probabilities: float32 math in a different thread must agree to this
PIXEL_TOL = 2      # heatmap PNGs: at most 2 grey levels apart (0-255)


@dataclass(frozen=True)
class Answer:
    """What one request returned, reduced to what can be compared."""

    label: str
    probabilities: dict
    heatmap: np.ndarray | None  # uint8 pixels of the heatmap PNG (explanations only)


def start_app(model: str, port: int, channels: str, concurrency: int, log: Path) -> subprocess.Popen:
    """`python -m space` on 127.0.0.1:port; returns once it answers HTTP 200."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "space", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--max-channels", channels, "--concurrency", str(concurrency),
           "--queue-size", "64"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"the app did not answer within 300 s; see {log}")


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def call(client, endpoint: str, image: str) -> Answer:
    """One request, reduced to an Answer."""
    from gradio_client import handle_file

    if endpoint == "classify":
        top = client.predict(handle_file(image), api_name="/classify")
        return Answer(top["label"], {c["label"]: c["confidence"] for c in top["confidences"]}, None)
    (heat, _), _, _, details = client.predict(handle_file(image), "", 0.5, api_name=f"/{endpoint}")
    figures = details["faithfulness"]
    return Answer(details["label"], {details["label"]: details["probability"],
                                     "deletion": figures["deletion"], "insertion": figures["insertion"]},
                  np.asarray(Image.open(heat).convert("L"), np.int16))


def same(a: Answer, b: Answer) -> bool:
    """Equal label, probabilities within PROB_TOL, heatmaps within PIXEL_TOL."""
    if a.label != b.label or a.probabilities.keys() != b.probabilities.keys():
        return False
    if any(abs((a.probabilities[k] or 0) - (b.probabilities[k] or 0)) > PROB_TOL for k in a.probabilities):
        return False
    if a.heatmap is None or b.heatmap is None:
        return a.heatmap is b.heatmap
    return a.heatmap.shape == b.heatmap.shape and int(np.abs(a.heatmap - b.heatmap).max()) <= PIXEL_TOL


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "runs" / "demo" / "model"),
                   help="model folder or REPO_ID[@REV] (default: the `make demo` model)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument("--warmup", type=int, default=3, help="requests per client in the concurrent warm-up round")
    p.add_argument("--images", type=int, default=6, help="distinct synthetic images")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--max-channels", default="auto", help="the app's --max-channels (auto, exact or K)")
    p.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    p.add_argument("--port", type=int, default=7871)
    p.add_argument("--time-limit", type=float, default=1200, help="seconds; no new request starts after it")
    a = p.parse_args(argv)
    if not (Path(a.model).exists() or "/" in a.model):
        raise SystemExit(f"{a.model}: no such model folder; run `make demo` first or pass --model")

    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    rng = np.random.default_rng(0)
    names = list(PATTERNS)[:3]
    images = []
    for i in range(a.images):
        path = work / f"{names[i % 3]}_{i}.png"
        make_image(names[i % 3], a.image_size, rng)[0].save(path)
        images.append(str(path))
    app = start_app(a.model, a.port, a.max_channels, a.concurrency, work / "app.log")
    url = f"http://127.0.0.1:{a.port}/"
    try:
        # One download folder per client: gradio_client writes a result file in place, so two clients
        # fetching the same file into one folder could read each other's half-written copy.
        alone = Client(url, verbose=False, download_files=str(work / "downloads" / "alone"))
        jobs = [(e, img) for img in images for e in ENDPOINTS]
        t0 = time.perf_counter()
        reference = {job: call(alone, *job) for job in jobs}
        alone_s = (time.perf_counter() - t0) / len(jobs)
        print(f"app pid {app.pid}, model {a.model}; {len(jobs)} distinct requests answered alone "
              f"({alone_s * 1000:.0f} ms each on average); RSS {rss_mib(app.pid):.0f} MiB", flush=True)

        latencies = {e: [] for e in ENDPOINTS}
        errors, mismatches, lock = [], [], threading.Lock()
        clients = [Client(url, verbose=False, download_files=str(work / "downloads" / str(c)))
                   for c in range(a.clients)]

        def client_loop(c: int, count: int, deadline: float, start: threading.Barrier, record: bool) -> None:
            start.wait()
            for r in range(count):
                if time.time() > deadline:
                    return
                job = jobs[(c * 7 + r) % len(jobs)]  # clients start at different points of the cycle
                t = time.perf_counter()
                try:
                    answer = call(clients[c], *job)
                except Exception as exc:  # noqa: BLE001 - count and go on: the run must finish and report
                    with lock:
                        errors.append(f"{job[0]} {Path(job[1]).name}: {type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if record:
                        latencies[job[0]].append(time.perf_counter() - t)
                    if not same(answer, reference[job]):
                        mismatches.append(f"{job[0]} {Path(job[1]).name}")

        def round_of(count: int, record: bool) -> float:
            start, deadline = threading.Barrier(a.clients), time.time() + a.time_limit
            t0 = time.perf_counter()
            with ThreadPoolExecutor(a.clients) as pool:
                list(pool.map(lambda c: client_loop(c, count, deadline, start, record), range(a.clients)))
            return time.perf_counter() - t0

        round_of(a.warmup, record=False)
        rss_before = rss_mib(app.pid)
        print(f"RSS after a concurrent warm-up ({a.clients} clients x {a.warmup}): {rss_before:.0f} MiB", flush=True)
        samples, running = [], threading.Event()
        running.set()

        def sample_rss() -> None:  # is memory still climbing at the end, or flat?
            while running.is_set():
                samples.append(rss_mib(app.pid))
                time.sleep(2)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        wall = round_of(a.requests, record=True)
        running.clear()
        sampler.join()
        rss_after = rss_mib(app.pid)
    finally:
        app.terminate()
        app.wait(timeout=30)

    done = sum(len(v) for v in latencies.values())
    every = [x for v in latencies.values() for x in v]
    print(f"\n{a.clients} clients x {a.requests} requests: {done} answered, {len(errors)} errors, "
          f"{len(mismatches)} mismatches, {wall:.1f} s, {done / wall:.2f} requests/s")
    print(f"{'endpoint':10s} {'n':>5s} {'p50 s':>8s} {'p95 s':>8s} {'max s':>8s}")
    for e, v in latencies.items():
        print(f"{e:10s} {len(v):5d} {percentile(v, 50):8.3f} {percentile(v, 95):8.3f} {max(v, default=0):8.3f}")
    print(f"{'all':10s} {len(every):5d} {percentile(every, 50):8.3f} {percentile(every, 95):8.3f} "
          f"{max(every, default=0):8.3f}")
    growth = (rss_after - rss_before) / rss_before
    print(f"app RSS {rss_before:.0f} MiB after warm-up -> {rss_after:.0f} MiB after the load ({growth:+.1%}); "
          f"during the load: max {max(samples, default=rss_after):.0f} MiB, by quarter "
          + " ".join(f"{np.mean(q):.0f}" for q in np.array_split(np.array(samples or [rss_after]), 4) if len(q)))
    for line in (errors[:5] + mismatches[:5]):
        print("  " + line)
    planned = a.clients * a.requests
    ok = not errors and not mismatches and growth < 0.10 and done == planned
    print(f"goal (all {planned} answered, 0 errors, 0 mismatches, RSS growth < 10%): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
