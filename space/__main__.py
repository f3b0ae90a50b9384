"""python -m space: serve the app for one model revision, or deploy it to a Hugging Face Space.

    python -m space --model runs/demo/model --port 7860
    MODEL_ID=org/her2-resnet50 MODEL_REVISION=v2 python -m space
    python -m space deploy org/her2-demo --model org/her2-resnet50 --revision v2

A Space runs the two-line `app.py` that `deploy` writes at its root, which calls `main()` here.
"""
from __future__ import annotations

try:  # ZeroGPU: `spaces` patches torch, so it must be imported before anything touches CUDA
    import spaces  # noqa: F401
except ImportError:  # not on a ZeroGPU Space: plain CUDA or CPU
    pass

import argparse
import os
import sys

from hub.cli import run_command
from hub.explain.cam import FAST_CHANNELS, parse_max_channels
from space.app import CONCURRENCY, MAX_BATCH_SIZE, QUEUE_SIZE, build_demo, launch_options


def _max_channels(value: str):
    try:
        return parse_max_channels(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serve_parser() -> argparse.ArgumentParser:
    """Options of the server; the model and Score-CAM defaults come from the environment (Space variables)."""
    p = argparse.ArgumentParser(prog="python -m space", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                epilog="python -m space deploy --help: deploy the app to a Space")
    p.add_argument("--model", default=os.environ.get("MODEL_ID", ""),
                   help="Hub repo id or local model folder (env MODEL_ID)")
    p.add_argument("--revision", default=os.environ.get("MODEL_REVISION") or None,
                   help="tag, branch or commit of a Hub model (env MODEL_REVISION; default: main, or the "
                        "@rev in --model)")
    p.add_argument("--host", default=None, help="address to bind (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--max-channels", default=os.environ.get("MAX_CHANNELS", "auto"), type=_max_channels,
                   help=f"Score-CAM masked passes: auto = fast (k={FAST_CHANNELS}) on CPU, exact on CUDA; "
                        "exact; or K (env MAX_CHANNELS)")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY, help="model calls run at once")
    p.add_argument("--queue-size", type=int, default=QUEUE_SIZE, help="requests that may wait in the queue")
    p.add_argument("--max-batch-size", type=int, default=int(os.environ.get("MAX_BATCH_SIZE", MAX_BATCH_SIZE)),
                   help="/classify requests answered by one forward pass (1: no batching; env MAX_BATCH_SIZE)")
    return p


def serve(argv: list[str] | None = None) -> None:
    """Load the model (or keep why it failed), build the app, serve it until interrupted."""
    from hub.device import pick_device
    from space import memory, samples
    from space.serving import load

    args = serve_parser().parse_args(argv)
    # A --device this machine lacks is the operator's mistake: one line now, not an app that serves no model.
    pick_device(args.device)
    memory.limit_arenas()  # before Gradio starts its worker threads
    served = load(args.model, args.revision, device=args.device, max_channels=args.max_channels)
    if served.ready:
        where = f"{served.source}@{served.revision} (commit {served.commit})" if served.is_hub else served.source
        print(f"serving {where} on {served.classifier.device}", flush=True)
    else:
        print(f"model not loaded: {served.error}", file=sys.stderr, flush=True)
    examples = samples.collect(served)
    demo = build_demo(served, examples, queue_size=args.queue_size, concurrency=args.concurrency,
                      max_batch_size=args.max_batch_size)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(examples))


def main(argv: list[str] | None = None) -> int:
    """`deploy ...` deploys; anything else serves; an expected failure is one line and exit 2 (hub.cli's policy)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["deploy"]:
        from space.deploy import main as deploy_main

        return deploy_main(argv[1:])
    return run_command(lambda: serve(argv))


if __name__ == "__main__":
    sys.exit(main())
