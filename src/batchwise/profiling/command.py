"""``batchwise profile MODEL``: measure a model on this machine and write a profile file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchwise.errors import ConfigError
from batchwise.outputs import check_output_file, write_text
from batchwise.profiling.cpu import (
    DEFAULT_REPEATS,
    MIN_CELL_S,
    default_vcpus,
    profile_model,
    profile_yaml,
)


def _numbers(text: str, option: str, kind: type) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"must be a comma-separated list of numbers, got {text!r}",
                          field=option) from None  # fmt: skip
    if not values or any(v != v for v in values):
        raise ConfigError(f"must list at least one number, got {text!r}", field=option)
    return values


def parse_options(text: str, field: str = "--options") -> dict[str, Any]:
    """A model's ``--options``: one JSON object, or ConfigError naming the option."""
    try:
        opts = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"not JSON: {exc}", field=field) from None
    if not isinstance(opts, dict):
        raise ConfigError("must be a JSON object", field=field)
    return opts


def profile_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Built-in runner (minilm, resnet, classifier, "
            "sleep), a .onnx file or module:Class."
        ),
    ],
    options: Annotated[
        str, typer.Option(help='Runner options as a JSON object, e.g. \'{"runtime": "onnx"}\'.')
    ] = "{}",
    batch_sizes: Annotated[
        str,
        typer.Option(
            "--batch-sizes",
            help="Batch sizes to measure (must include 1); the profile covers 1..max.",
        ),
    ] = "1,2,4,8,16,32",
    vcpus: Annotated[
        str | None,
        typer.Option(
            help="vCPU allotments (>= 3), each enforced by "
            "a CPU quota (default: 4 steps up to the cores)."
        ),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Batches per cell.")] = DEFAULT_REPEATS,
    min_cell_seconds: Annotated[
        float,
        typer.Option(
            "--min-cell-seconds",
            help="Keep timing a cell (more batches than --repeats) until its batches add "
            "up to this many seconds: a throttled quota's batch time depends on the CFS "
            "period's phase (0: exactly --repeats).",
        ),
    ] = MIN_CELL_S,
    name: Annotated[str | None, typer.Option(help="Model name in the profile file.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the profile YAML here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure latency over batch sizes and vCPU quotas; fit and write a profile for `plan`."""
    opts = parse_options(options)
    sizes = [int(v) for v in _numbers(batch_sizes, "--batch-sizes", float)]
    allots = _numbers(vcpus, "--vcpus", float) if vcpus else list(default_vcpus())
    if output is not None:
        check_output_file(output, "-o")
    err = Console(stderr=True)
    with err.status("profiling") as status:

        def progress(what: str, done: int, total: int) -> None:
            status.update(f"profiling {model}: {done}/{total} batches ({what})")

        try:
            result = profile_model(
                model, opts, ".", sizes, allots, repeats, name, progress, min_cell_seconds
            )
        except TypeError as exc:
            raise ConfigError(f"{exc}", field="--options") from None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    text = profile_yaml(result)
    if output is not None:
        write_text(output, text)
    if as_json:
        doc = result.to_dict()
        doc["output"] = str(output) if output else None
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    table = Table(title=Text(f"{result.name}: {result.seconds:.0f} s, vCPU quota by "
                             f"{result.mechanism}"))  # fmt: skip
    for col in ("batch", "vCPU", "mean s", "p99 s", "fit avg", "fit max"):
        table.add_column(col, justify="right")
    for p in result.points:
        table.add_row(str(p.batch), f"{p.vcpu:g}", f"{p.mean_s:.4f}", f"{p.p99_s:.4f}",
                      f"{p.avg_error:+.1%}", f"{p.max_error:+.1%}")  # fmt: skip
    Console().print(table)
    if result.dropped_vcpus:
        shown = ", ".join(f"{c:g} vCPU" for c in result.dropped_vcpus)
        Console().print(Text("not fitted, measured twice slower than with less CPU (another "
                             f"process busy?): {shown}"))  # fmt: skip
    if output is None:
        sys.stdout.write(text)
    else:
        Console().print(Text(f"profile written to {output}"))
