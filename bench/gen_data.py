"""Deterministic benchmark data: N small text files, the same records as Parquet and JSONL.

Usage: python bench/gen_data.py [--out out/bench-data] [--files 20000] [--seed 0] [--json]

Batch-job benchmarks need one fixed corpus in the three input shapes the batch reader
supports (many small files, a Parquet table, JSON lines), so that throughput numbers are
comparable across shapes, runs and machines. Layout under --out:

    files/SSS/rec-NNNNNNN.txt   one sentence per file (no trailing newline), 100 per folder
    table.parquet               columns id, text; row groups of 2000 rows
    records.jsonl               {"id": ..., "text": ...} per line
    MANIFEST.json               the arguments and sizes; a rerun with the same ones is a no-op

Sentences are 8..48 words (uniform) from an embedded ~500-word vocabulary, drawn
record by record from numpy's default_rng(seed), so the output is byte-identical for the
same arguments and the first k records are the same for any --files >= k.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
"""Bump when the output for given arguments changes, so stale MANIFESTs are regenerated."""

FILES_PER_DIR = 100
ROW_GROUP_ROWS = 2000
PROGRESS_EVERY = 5000
MIN_WORDS, MAX_WORDS = 8, 48
COMMA_P = 0.06
"""Chance of a comma after a (non-final) word: keeps tokenizers' punctuation paths busy."""

_WORDS = """
    the of and to a in is it you that he was for on are with as his they be at one have
    this from or had by not word but what some we can out other were all there when up use
    your how said an each she which do their time if will way about many then them write
    would like so these her long make thing see him two has look more day could go come did
    number sound no most people my over know water than call first who may down side been
    now find any new work part take get place made live where after back little only round
    man year came show every good me give our under name very through just form sentence
    great think say help low line differ turn cause much mean before move right boy old too
    same tell does set three want air well also play small end put home read hand port large
    spell add even land here must big high such follow act why ask men change went light kind
    off need house picture try us again animal point mother world near build self earth
    father head stand own page should country found answer school grow study still learn
    plant cover food sun four between state keep eye never last let thought city tree cross
    farm hard start might story saw far sea draw left late run while press close night real
    life few north open seem together next white children begin got walk example ease paper
    group always music those both mark often letter until mile river car feet care second
    book carry took science eat room friend began idea fish mountain stop once base hear
    horse cut sure watch color face wood main enough plain girl usual young ready above ever
    red list though feel talk bird soon body dog family direct pose leave song measure door
    product black short numeral class wind question happen complete ship area half rock
    order fire south problem piece told knew pass since top whole king space heard best hour
    better true during hundred five remember step early hold west ground interest reach fast
    verb sing listen six table travel less morning ten simple several vowel toward war lay
    against pattern slow center love person money serve appear road map rain rule govern
    pull cold notice voice unit power town fine certain fly fall lead cry dark machine note
    wait plan figure star box noun field rest correct able pound done beauty drive stood
    contain front teach week final gave green quick develop ocean warm free minute strong
    special mind behind clear tail produce fact street inch multiply nothing course stay
    wheel full force blue object decide surface deep moon island foot system busy test
    record boat common gold possible plane stead dry wonder laugh thousand ago ran check game
    shape equate miss brought heat snow tire bring yes distant fill east paint language among
"""
VOCAB: tuple[str, ...] = tuple(_WORDS.split())
"""~500 common English words; fixed, so the corpus depends only on --files and --seed."""


def record_id(i: int) -> str:
    """The id (and file stem) of record i."""
    return f"rec-{i:07d}"


def record_path(root: Path, i: int) -> Path:
    """Where record i's text file lives: 100 files per folder keeps directory listings cheap."""
    return root / "files" / f"{i // FILES_PER_DIR:03d}" / f"{record_id(i)}.txt"


def sentence(rng: np.random.Generator) -> str:
    """One English-like sentence; draws length, words, commas in that order (prefix-stable)."""
    n = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
    idx = rng.integers(0, len(VOCAB), size=n)
    commas = rng.random(n) < COMMA_P
    words = [VOCAB[j] for j in idx]
    for k in range(n - 1):
        if commas[k]:
            words[k] += ","
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file + rename so an interrupted run never leaves a half file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _prune_stale(root: Path, n: int) -> None:
    """Remove our own rec-*.txt files with index >= n left by an earlier, larger run."""
    files_dir = root / "files"
    if not files_dir.is_dir():
        return
    for sub in files_dir.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.glob("rec-*.txt"):
            stem = f.stem[4:]
            if stem.isdigit() and int(stem) >= n:
                f.unlink()
        if not any(sub.iterdir()):
            sub.rmdir()


def _manifest_args(files: int, seed: int) -> dict:
    return {"files": files, "seed": seed, "format": FORMAT_VERSION}


def generate(out: Path, files: int, seed: int, log=None) -> dict:
    """Write the corpus under out (or reuse it if MANIFEST.json matches); return the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest_path = out / "MANIFEST.json"
    args = _manifest_args(files, seed)
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("args") == args:
            return {**old, "skipped": True}
        manifest_path.unlink()  # invalidate before touching anything else
    out.mkdir(parents=True, exist_ok=True)
    _prune_stale(out, files)

    rng = np.random.default_rng(seed)
    ids: list[str] = []
    texts: list[str] = []
    files_bytes = 0
    made_dir = -1
    for i in range(files):
        text = sentence(rng)
        path = record_path(out, i)
        if i // FILES_PER_DIR != made_dir:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dir = i // FILES_PER_DIR
        data = text.encode()
        path.write_bytes(data)
        files_bytes += len(data)
        ids.append(record_id(i))
        texts.append(text)
        if log and (i + 1) % PROGRESS_EVERY == 0:
            log(f"  {i + 1}/{files} files")

    table = pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())})
    pq_path = out / "table.parquet"
    tmp = pq_path.with_name(pq_path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="snappy")
    os.replace(tmp, pq_path)

    jsonl = "".join(
        json.dumps({"id": r, "text": t}, ensure_ascii=False) + "\n"
        for r, t in zip(ids, texts, strict=True)
    ).encode()
    _write_atomic(out / "records.jsonl", jsonl)

    manifest = {
        "args": args,
        "files_bytes": files_bytes,
        "parquet_bytes": pq_path.stat().st_size,
        "jsonl_bytes": len(jsonl),
    }
    manifest["bytes"] = manifest["files_bytes"] + manifest["parquet_bytes"] + len(jsonl)
    _write_atomic(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return {**manifest, "skipped": False}


def main(argv: list[str] | None = None) -> dict:
    """CLI entry; returns the summary it printed (handy for tests)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench-data"))
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.files < 1:
        ap.error("--files must be >= 1")

    t0 = time.perf_counter()
    m = generate(args.out, args.files, args.seed, log=lambda s: print(s, file=sys.stderr))
    summary = {
        "out": str(args.out),
        "files": args.files,
        "bytes": m["bytes"],
        "seconds": round(time.perf_counter() - t0, 3),
        "skipped": m["skipped"],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        what = "up to date" if m["skipped"] else "wrote"
        print(
            f"{what}: {args.out} — {args.files} files + table.parquet + records.jsonl, "
            f"{m['bytes'] / 1e6:.2f} MB, {summary['seconds']:.2f} s"
        )
    return summary


if __name__ == "__main__":
    main()
