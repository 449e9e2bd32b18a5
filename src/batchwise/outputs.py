"""Where commands write: checked before the work starts, errors that name the option.

Why: ``plan -o DIRECTORY`` or ``--plot x.txt`` used to fail only after the work was
done, with an ``IsADirectoryError`` traceback. Each command checks its outputs up
front with :func:`check_output_file` / :func:`check_output_dir`, and writes through
:func:`write_text` / :func:`save_figure`, which turn an OS failure at write time
(disk full, a read-only ``/proc`` file) into one clear :class:`ConfigError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from batchwise.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_parent(path: Path, option: str) -> None:
    anc = _nearest_existing(path.parent)
    if not anc.is_dir():
        raise ConfigError(f"{anc} is not a directory", field=option, file=str(path))
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create files in {anc}", field=option, file=str(path))


def check_output_file(path: Path, option: str, suffix: str | None = None) -> Path:
    """Refuse an output file that cannot be written, before any work is done."""
    if suffix is not None and path.suffix.lower() != suffix:
        raise ConfigError(f"must end in {suffix}", field=option, file=str(path))
    if path.is_dir():
        raise ConfigError("is a directory, expected a file name", field=option, file=str(path))
    if path.exists():
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"cannot write ({exc.strerror or exc})", field=option, file=str(path)
            ) from None
    else:
        _check_parent(path, option)
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """Refuse an output folder that is a file or cannot be created."""
    if path.exists() and not path.is_dir():
        raise ConfigError("exists and is not a directory", field=option, file=str(path))
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError("directory is not writable", field=option, file=str(path))
    else:
        _check_parent(path, option)
    return path


def _failed(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write ({exc.strerror or exc})", file=str(path))


def write_text(path: Path, text: str) -> Path:
    """Write a text file (creating its folder); an OS failure is a ConfigError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _failed(path, exc) from None
    return path


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Save a matplotlib figure as PNG (creating its folder); OS failures as ConfigError."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=120, **kwargs)
    except OSError as exc:
        raise _failed(out, exc) from None
    return out
