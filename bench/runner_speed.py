"""MiniLM runner speed: exact PyTorch vs ONNX Runtime (same graph, fp32) vs bf16, one run.

Usage: python bench/runner_speed.py [--json] [--sentences 1024] [--batch 32] [--threads 2]
    [--repeats 5]

Model only (tokenizer included, no I/O): sentences/s per runtime, median over repeats,
interleaved so machine drift hits every runtime alike; plus the worst cosine of each
runtime's embeddings to the exact model's on the same (held-out, generated) sentences.
The PyTorch runtime is the naive-loop peer's model (same weights and pooling; cosine
1.0000 to sentence-transformers, see tests/runtime/test_bert.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import gen_data
from batchwise.runtime.runners import MiniLMEncoder
from common import markdown, median

VARIANTS = {"torch": {}, "onnx": {"runtime": "onnx"}, "bf16": {"precision": "bf16"}}
"""The exact model (``torch``, the reference) and the optimised runners, by their options."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sentences", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if min(args.sentences, args.batch, args.threads, args.repeats) < 1:
        print("error: every option must be >= 1", file=sys.stderr)
        sys.exit(2)
    rng = np.random.default_rng(7)
    texts = [gen_data.sentence(rng) for _ in range(args.sentences)]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["BATCHWISE_CACHE"] = cache  # export from scratch: nothing stale
        models = {r: MiniLMEncoder(threads=args.threads, **o).load() for r, o in VARIANTS.items()}
        rates: dict[str, list[float]] = {r: [] for r in VARIANTS}
        for rep in range(args.repeats):
            for r, m in models.items():
                m.predict(batches[0])  # warm
                t = time.perf_counter()
                for b in batches:
                    m.predict(b)
                rates[r].append(len(texts) / (time.perf_counter() - t))
            print(f"  repeat {rep + 1}/{args.repeats}", file=sys.stderr)
        exact = np.concatenate([np.stack(models["torch"].predict(b)) for b in batches])
        rows = []
        for r, m in models.items():
            emb = np.concatenate([np.stack(m.predict(b)) for b in batches])
            cos = (emb * exact).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(exact, axis=1)
            rows.append({
                "runtime": r, "sentences_per_s": median(rates[r]),
                "speedup_vs_torch": median(rates[r]) / median(rates["torch"]),
                "min_cosine_to_torch": float(cos.min()),
            })  # fmt: skip
    out = {"batch": args.batch, "threads": args.threads, "sentences": args.sentences,
           "repeats": args.repeats, "rows": rows}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"### MiniLM runners (batch {args.batch}, {args.threads} threads, "
          f"{args.sentences} sentences, median of {args.repeats})\n")  # fmt: skip
    print(markdown(
        ["runtime", "sentences/s", "× torch", "min cosine to torch"],
        [[r["runtime"], f"{r['sentences_per_s']:.0f}", f"{r['speedup_vs_torch']:.2f}",
          f"{r['min_cosine_to_torch']:.6f}"] for r in rows],
    ))  # fmt: skip


if __name__ == "__main__":
    main()
