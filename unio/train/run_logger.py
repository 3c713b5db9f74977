"""What a training run reports: `metrics.jsonl`, wandb, and a loss-curve picture. Rank 0 only.

`metrics.jsonl` holds one JSON object per logged step (`step`, `loss`, `lr`, `grad_norm`,
`tokens_per_s`, `mfu`, per-task `loss/task/<dataset>/<task>` and per-segment `loss/segment/<name>`);
validation lines carry `"split": "val"`, events (`"event": "nonfinite_loss"`, `"preempted"`, ...)
their own fields. On resume the file is cut back to the resumed step, so the file always describes one
consistent run. wandb receives the same scalars (`mode: offline` by default, so nothing leaves the
machine until you `wandb sync`; `disabled` under tests and CI via `WANDB_MODE`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unio.atomic import atomic_write_text

METRICS = "metrics.jsonl"


@dataclass
class LoggerConfig:
    kind: str = "wandb"  # wandb | none (metrics.jsonl is always written)
    project: str = "unio"
    mode: str = "offline"  # online | offline | disabled; the WANDB_MODE environment variable wins
    name: str | None = None  # default: the run directory's name
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("wandb", "none"):
            raise ValueError(f"logger.kind must be wandb or none, got {self.kind!r}")
        if self.mode not in ("online", "offline", "disabled"):
            raise ValueError(f"logger.mode must be online, offline or disabled, got {self.mode!r}")


class RunLogger:
    """Writes metrics on the main process; a silent no-op on every other rank."""

    def __init__(
        self, cfg: LoggerConfig, run_dir: Path, config: dict[str, Any], is_main: bool, resume_step: int = 0
    ) -> None:
        self.is_main = is_main
        self.path = Path(run_dir) / METRICS
        self.wandb = None
        if not is_main:
            return
        if resume_step > 0:
            truncate_metrics(self.path, resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh start in a reused run directory
        self._file = self.path.open("a")
        mode = os.environ.get("WANDB_MODE", cfg.mode)
        if cfg.kind == "wandb" and mode != "disabled":
            import wandb

            self.wandb = wandb.init(
                project=cfg.project,
                name=cfg.name or Path(run_dir).name,
                dir=str(run_dir),
                mode=mode,
                config=config,
                tags=cfg.tags,
                id=_wandb_id(Path(run_dir)),
                resume="allow",
            )

    def log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.wandb is not None:
            prefix = "val/" if record.get("split") == "val" else ""
            scalars = {
                f"{prefix}{k}": v
                for k, v in record.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
            }
            self.wandb.log(scalars, step=int(record["step"]))

    def close(self) -> None:
        if not self.is_main:
            return
        self._file.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _wandb_id(run_dir: Path) -> str:
    """One wandb run id per run directory (kept in the directory), so a resumed run continues it."""
    file = run_dir / "wandb_id.txt"
    if file.is_file():
        return file.read_text().strip()
    import secrets

    run_id = secrets.token_hex(4)
    atomic_write_text(file, run_id + "\n")
    return run_id


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (a torn last line, from a killed process, is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the records up to `step` (the resumed checkpoint): the steps after it run again."""
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if int(r.get("step", 0)) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_loss_curve(metrics_path: Path, out_path: Path) -> Path | None:
    """Training (and validation) loss against step, as a PNG; None when nothing was logged."""
    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and r.get("split") != "val"]
    val = [(r["step"], r["loss"]) for r in records if "loss" in r and r.get("split") == "val"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(*zip(*train), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path
