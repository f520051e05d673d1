"""The quality benchmark's chart: recall@5 overall and by question kind, ours beside each peer (a PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_recall_by_kind(rows: Mapping[str, Mapping[str, float | None]], counts: Mapping[str, int],
                        systems: Sequence[tuple[str, str]], path: Path, *, title: str) -> None:
    """A grouped bar chart. ``rows`` maps a group ("overall", "kind=symptom", ...) to each system's recall@5;
    ``counts`` the group's answerable questions; ``systems`` is (key, label) in the order of the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in rows if any(rows[g].get(key) is not None for key, _ in systems)]
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * len(groups) + 1.5), 4.8), dpi=120)
    for i, (key, label) in enumerate(systems):
        xs = [g_no + (i - (len(systems) - 1) / 2) * width for g_no in range(len(groups))]
        values = [rows[g].get(key) for g in groups]
        bars = ax.bar(xs, [v or 0.0 for v in values], width * 0.95, label=label)
        for bar, value in zip(bars, values, strict=True):
            text = "-" if value is None else f"{value:.2f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{g.removeprefix('kind=')}\n(n={counts.get(g, 0)})" for g in groups])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("recall@5")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, ncols=min(len(systems), 4), loc="upper center", bbox_to_anchor=(0.5, -0.13),
              frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
