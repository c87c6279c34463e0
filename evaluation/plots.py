"""Plots of an evaluation (matplotlib, Agg backend: no display needed).

* ``f1_erde.png``: per method, F1 and ERDE5 / ERDE50 side by side;
* ``probability_curves.png``: p_user after each writing for a seeded sample
  of positive and control users, with the 0.5 decision threshold.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: set before pyplot is imported
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from evaluation.evaluate import Evaluation


def bars(ev: Evaluation, path: Path) -> Path:
    names = ev.methods
    fig, axes = plt.subplots(1, 3, figsize=(max(9, 1.1 * len(names) * 1.6), 4.2),
                             sharey=False)
    for ax, key, title in zip(axes, ("f1", "erde5", "erde50"),
                              ("F1 (higher is better)", "ERDE5 (lower is better)",
                               "ERDE50 (lower is better)")):
        values = [ev.metrics[n].get(key, 0.0) for n in names]
        ax.bar(range(len(names)), values, color="#4c72b0" if key == "f1" else "#c44e52")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves(ev: Evaluation, path: Path, per_class: int = 5, seed: int = 0) -> Path:
    rng = random.Random(seed)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, label, title in zip(axes, (1, 0), ("positive users", "control users")):
        users = sorted(u for u, t in ev.truth.items() if t == label)
        for u in rng.sample(users, min(per_class, len(users))):
            traj = ev.trajectories[u]
            ax.plot(range(1, len(traj) + 1), traj, marker=".", linewidth=1, label=u)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"p_user over writings: {title}", fontsize=10)
        ax.set_xlabel("writings seen")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("probability of risk")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
