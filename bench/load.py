"""Load test of the Gradio app: N concurrent gradio_client clients against one app on 127.0.0.1.

The app runs as its own process (`python -m space`), so its resident memory is measured apart from
the clients'. First every distinct request (endpoint x image) is answered alone: those answers
are the reference. Then a warm-up round with every client at once (memory use under concurrency
settles only once the app has served concurrent requests: allocator arenas, thread pools), the
app's RSS, the load (each client sends its requests back to back, cycling /classify, /gradcam,
/scorecam and /scorecam + /scorecam_faithfulness over the images), and the RSS again. Every answer
under load is compared with its reference: a mismatch means a result depended on what else was
running (shared hooks, shared state). Goal on 2 CPU cores with the defaults: 16 clients x 50
requests, 0 errors, 0 mismatches, RSS growth under 10% after warm-up.

`--compare-batching` measures what batching /classify buys instead: two apps on the same model,
one answering each request with its own forward pass (`--max-batch-size 1`), one batching
requests that wait together (`--max-batch-size N`), loaded alternately with N clients on
/classify for a few rounds (the order shuffled each round, so drift of the machine hits both).
Goal: batched throughput >= 1.5x unbatched, every answer the same as the unbatched reference, 0 errors.

    python -m bench.load --model runs/demo/model              # after `make demo`
    python -m bench.load --model org/her2-resnet50@v2 --clients 8 --requests 20
    python -m bench.load --model runs/demo/model --clients 1 --endpoints classify gradcam   # latency alone
    python -m bench.load --model runs/demo/model --compare-batching --requests 20

Requests go only to the apps on loopback; the run is bounded by --requests and --time-limit.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from train.synthetic import PATTERNS, make_image

ROOT = Path(__file__).resolve().parents[1]

# "<method>_faithfulness": the map, then its figures from the session's state (two requests, timed together),
# as the app's CAM tabs do; "<method>" alone is the map, what a user waits for before seeing anything.
ENDPOINTS = ("classify", "gradcam", "scorecam", "gradcam_faithfulness", "scorecam_faithfulness")
DEFAULT_ENDPOINTS = ("classify", "gradcam", "scorecam", "scorecam_faithfulness")
PROB_TOL = 1e-5    # probabilities: float32 math in a different thread or batch must agree to this
PIXEL_TOL = 2      # heatmap PNGs: at most 2 grey levels apart (0-255)
BATCHING_GOAL = 1.5


@dataclass(frozen=True)
class Answer:
    """What one request returned, reduced to what can be compared."""

    label: str
    probabilities: dict
    heatmap: np.ndarray | None  # uint8 pixels of the heatmap PNG (explanations only)


@dataclass
class Round:
    """What a round of concurrent clients got: latencies per endpoint, errors, mismatches, wall time."""

    latencies: dict = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: list = field(default_factory=list)
    mismatches: list = field(default_factory=list)
    wall: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def answered(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.answered / self.wall if self.wall else 0.0


@dataclass
class App:
    """One `python -m space` process and the clients pointed at it."""

    process: subprocess.Popen
    url: str
    clients: list = field(default_factory=list)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "runs" / "demo" / "model"),
                   help="model folder or REPO_ID[@REV] (default: the `make demo` model)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="requests per client (per round)")
    p.add_argument("--warmup", type=int, default=3, help="requests per client in the concurrent warm-up round")
    p.add_argument("--images", type=int, default=6, help="distinct synthetic images")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--max-channels", default="auto", help="the app's --max-channels (auto, exact or K)")
    p.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    p.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(DEFAULT_ENDPOINTS),
                   help="what the load test sends")
    p.add_argument("--max-batch-size", type=int, default=8, help="the (batched) app's --max-batch-size")
    p.add_argument("--compare-batching", action="store_true",
                   help="/classify throughput of a batched app against an unbatched one, instead of the load test")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of --compare-batching")
    p.add_argument("--port", type=int, default=7871, help="the app's port (the unbatched one: port + 1)")
    p.add_argument("--time-limit", type=float, default=1200, help="seconds; no new request starts after it")
    a = p.parse_args(argv)
    if not (Path(a.model).exists() or "/" in a.model):
        raise SystemExit(f"{a.model}: no such model folder; run `make demo` first or pass --model")
    return a


def make_images(work: Path, count: int, size: int) -> list[str]:
    """`count` synthetic PNGs of the first three patterns."""
    rng = np.random.default_rng(0)
    names = list(PATTERNS)[:3]
    paths = []
    for i in range(count):
        path = work / f"{names[i % 3]}_{i}.png"
        make_image(names[i % 3], size, rng)[0].save(path)
        paths.append(str(path))
    return paths


def start_app(a: argparse.Namespace, port: int, max_batch_size: int, log: Path) -> subprocess.Popen:
    """`python -m space` on 127.0.0.1:port; returns once it answers HTTP 200."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "space", "--model", a.model, "--host", "127.0.0.1", "--port", str(port),
           "--max-channels", a.max_channels, "--concurrency", str(a.concurrency), "--queue-size", "64",
           "--max-batch-size", str(max_batch_size)]
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


def connect(a: argparse.Namespace, work: Path, name: str, port: int, max_batch_size: int) -> App:
    """Start an app and make its clients (one download folder each: gradio_client writes result files in place,
    so two clients fetching the same file into one folder could read each other's half-written copy)."""
    from gradio_client import Client

    proc = start_app(a, port, max_batch_size, work / f"{name}.log")
    url = f"http://127.0.0.1:{port}/"
    clients = [Client(url, verbose=False, download_files=str(work / name / str(c))) for c in range(a.clients + 1)]
    return App(proc, url, clients)


def stop(app: App) -> None:
    app.process.terminate()
    app.process.wait(timeout=30)


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
    method, _, figures = endpoint.partition("_")
    (heat, _), _, _, details, _ = client.predict(handle_file(image), "", 0.5, api_name=f"/{method}")
    numbers = {details["label"]: details["probability"]}
    if figures:  # the same client's session holds the map just made
        _, measured, _ = client.predict(api_name=f"/{endpoint}")
        if measured["label"] != details["label"]:
            raise RuntimeError(f"figures of {measured['label']!r} after a map of {details['label']!r}")
        numbers.update(deletion=measured["faithfulness"]["deletion"], insertion=measured["faithfulness"]["insertion"])
    return Answer(details["label"], numbers, np.asarray(Image.open(heat).convert("L"), np.int16))


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


def references(client, jobs: list[tuple[str, str]]) -> tuple[dict, float]:
    """Every distinct job answered alone, one after the other; and the mean seconds per answer."""
    t0 = time.perf_counter()
    answers = {job: call(client, *job) for job in jobs}
    return answers, (time.perf_counter() - t0) / len(jobs)


def client_loop(client, c: int, jobs: list, reference: dict, count: int, deadline: float,
                start: threading.Barrier, result: Round) -> None:
    """`count` requests back to back, starting at its own point of the job cycle; each checked against its reference."""
    start.wait()
    for r in range(count):
        if time.time() > deadline:
            return
        job = jobs[(c * 7 + r) % len(jobs)]
        t = time.perf_counter()
        try:
            answer = call(client, *job)
        except Exception as exc:  # noqa: BLE001 - count and go on: the run must finish and report
            with result.lock:
                result.errors.append(f"{job[0]} {Path(job[1]).name}: {type(exc).__name__}: {exc}")
            continue
        with result.lock:
            result.latencies[job[0]].append(time.perf_counter() - t)
            if not same(answer, reference[job]):
                result.mismatches.append(f"{job[0]} {Path(job[1]).name}")


def run_round(clients: list, jobs: list, reference: dict, count: int, time_limit: float) -> Round:
    """Every client at once, `count` requests each; what they got."""
    result, start, deadline = Round(), threading.Barrier(len(clients)), time.time() + time_limit
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(lambda c: client_loop(clients[c], c, jobs, reference, count, deadline, start, result),
                      range(len(clients))))
    result.wall = time.perf_counter() - t0
    return result


def sample_rss(pid: int, samples: list, running: threading.Event) -> None:
    """RSS every 2 s while `running` (is memory still climbing at the end, or flat?)."""
    while running.is_set():
        samples.append(rss_mib(pid))
        time.sleep(2)


def print_latencies(result: Round) -> None:
    print(f"{'endpoint':10s} {'n':>5s} {'p50 s':>8s} {'p95 s':>8s} {'max s':>8s}")
    every = [x for v in result.latencies.values() for x in v]
    for e, v in [*result.latencies.items(), ("all", every)]:
        if v:
            print(f"{e:10s} {len(v):5d} {percentile(v, 50):8.3f} {percentile(v, 95):8.3f} {max(v):8.3f}")


def load_test(a: argparse.Namespace, work: Path, images: list[str]) -> int:
    """References, a concurrent warm-up, the load with RSS sampled; 0 when the goal is met."""
    app = connect(a, work, "app", a.port, a.max_batch_size)
    try:
        jobs = [(e, img) for img in images for e in a.endpoints]
        reference, alone_s = references(app.clients[-1], jobs)
        print(f"app pid {app.process.pid}, model {a.model}; {len(jobs)} distinct requests answered alone "
              f"({alone_s * 1000:.0f} ms each on average); RSS {rss_mib(app.process.pid):.0f} MiB", flush=True)
        clients = app.clients[:a.clients]
        run_round(clients, jobs, reference, a.warmup, a.time_limit)
        rss_before = rss_mib(app.process.pid)
        print(f"RSS after a concurrent warm-up ({a.clients} clients x {a.warmup}): {rss_before:.0f} MiB", flush=True)
        samples, running = [], threading.Event()
        running.set()
        sampler = threading.Thread(target=sample_rss, args=(app.process.pid, samples, running), daemon=True)
        sampler.start()
        result = run_round(clients, jobs, reference, a.requests, a.time_limit)
        running.clear()
        sampler.join()
        rss_after = rss_mib(app.process.pid)
    finally:
        stop(app)
    return report_load(a, result, rss_before, rss_after, samples)


def report_load(a: argparse.Namespace, result: Round, rss_before: float, rss_after: float, samples: list) -> int:
    """Print the load test's figures; 0 when every request was answered, the same, and RSS stayed flat."""
    print(f"\n{a.clients} clients x {a.requests} requests: {result.answered} answered, {len(result.errors)} errors, "
          f"{len(result.mismatches)} mismatches, {result.wall:.1f} s, {result.throughput:.2f} requests/s")
    print_latencies(result)
    growth = (rss_after - rss_before) / rss_before
    print(f"app RSS {rss_before:.0f} MiB after warm-up -> {rss_after:.0f} MiB after the load ({growth:+.1%}); "
          f"during the load: max {max(samples, default=rss_after):.0f} MiB, by quarter "
          + " ".join(f"{np.mean(q):.0f}" for q in np.array_split(np.array(samples or [rss_after]), 4) if len(q)))
    for line in result.errors[:5] + result.mismatches[:5]:
        print("  " + line)
    planned = a.clients * a.requests
    ok = not result.errors and not result.mismatches and growth < 0.10 and result.answered == planned
    print(f"goal (all {planned} answered, 0 errors, 0 mismatches, RSS growth < 10%): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def compare_batching(a: argparse.Namespace, work: Path, images: list[str]) -> int:
    """Alternating rounds of N clients on /classify against an unbatched and a batched app; 0 when the goal is met."""
    apps = {"unbatched": connect(a, work, "unbatched", a.port + 1, 1),
            "batched": connect(a, work, "batched", a.port, a.max_batch_size)}
    jobs = [("classify", img) for img in images]
    try:
        reference, alone_s = references(apps["unbatched"].clients[-1], jobs)  # each image, its own forward pass
        print(f"model {a.model}; {len(jobs)} images classified alone ({alone_s * 1000:.0f} ms each); "
              f"{a.clients} clients x {a.requests} requests per round, {a.rounds} rounds, batches of <= "
              f"{a.max_batch_size}", flush=True)
        for app in apps.values():  # warm-up: thread pools, allocator, first batches
            run_round(app.clients[:a.clients], jobs, reference, a.warmup, a.time_limit)
        rounds = {name: [] for name in apps}
        order = random.Random(0)
        for r in range(a.rounds):
            for name in order.sample(list(apps), len(apps)):
                result = run_round(apps[name].clients[:a.clients], jobs, reference, a.requests, a.time_limit)
                rounds[name].append(result)
                print(f"round {r + 1} {name:9s}: {result.throughput:6.2f} requests/s, p50 "
                      f"{percentile(result.latencies['classify'], 50):.3f} s, {len(result.errors)} errors, "
                      f"{len(result.mismatches)} mismatches", flush=True)
    finally:
        for app in apps.values():
            stop(app)
    return report_batching(a, rounds)


def report_batching(a: argparse.Namespace, rounds: dict[str, list[Round]]) -> int:
    """Per-round and median throughput ratio batched / unbatched; 0 when >= the goal with the same answers."""
    ratios = [b.throughput / u.throughput for b, u in zip(rounds["batched"], rounds["unbatched"])]
    every = [r for runs in rounds.values() for r in runs]
    errors, mismatches = sum(len(r.errors) for r in every), sum(len(r.mismatches) for r in every)
    for r in every:
        for line in r.errors[:3] + r.mismatches[:3]:
            print("  " + line)
    median = float(np.median(ratios))
    print(f"\nbatched / unbatched throughput per round: {' '.join(f'{x:.2f}x' for x in ratios)}; median {median:.2f}x")
    for name, runs in rounds.items():
        print(f"{name:9s} median {np.median([r.throughput for r in runs]):.2f} requests/s, "
              f"{sum(r.answered for r in runs)} answered")
    ok = median >= BATCHING_GOAL and not errors and not mismatches
    print(f"goal (batched >= {BATCHING_GOAL}x unbatched, same answers, 0 errors): {'met' if ok else 'NOT met'} "
          f"({errors} errors, {mismatches} mismatches)")
    return 0 if ok else 1


def main(argv=None) -> int:
    a = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:  # removed afterwards, even on Ctrl-C
        work = Path(tmp)
        images = make_images(work, a.images, a.image_size)
        return compare_batching(a, work, images) if a.compare_batching else load_test(a, work, images)


if __name__ == "__main__":
    sys.exit(main())
