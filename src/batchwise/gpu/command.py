"""``batchwise gpu …``: the typer group of the GPU-resourcing commands.

Each command lives in its own module beside the policy it runs and is registered
below; the CLI mounts this group with ``app.add_typer(gpu_app, name="gpu")``.
"""

from __future__ import annotations

import typer

gpu_app = typer.Typer(
    name="gpu",
    help="GPU resourcing on demand (Dilu): pruning-search profiles, placement, co-scaling.",
    no_args_is_help=True,
    add_completion=False,
)

from batchwise.gpu.profile_command import profile_command  # noqa: E402

gpu_app.command("profile")(profile_command)

from batchwise.gpu.simulate_command import simulate_command  # noqa: E402

gpu_app.command("simulate")(simulate_command)

from batchwise.gpu.coscale_command import coscale_command  # noqa: E402

gpu_app.command("coscale")(coscale_command)
