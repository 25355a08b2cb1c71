"""How often each width / depth / kernel / expand / resolution choice is trained. Offline.

Replays the children that a run's steps train, from the function the trainer calls
(supernet.training.steps.stage_children), without training anything, and prints
per kind of gene the child-passes per step at its smallest, middle and largest choice
(split into the sandwich's two extremes and its random children), the resolutions the
random children train at, and for the 8 children of benchmarks/cifar_quality.py how many
passes per step train exactly their choice of a gene (mean over genes) and their own
resolution.

    python benchmarks/choice_counts.py [--epochs 16] [--steps-per-epoch 39]
        [--options before,baseline,ps,random4]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar_quality import BASE, children, option_config  # noqa: E402

from supernet import load_space  # noqa: E402
from supernet.training.config import TrainConfig, resolved  # noqa: E402
from supernet.training.steps import stage_children  # noqa: E402


def kind(gene: str) -> str:
    """resolution, width (stem, stage widths, head), depth, kernel or expand."""
    for k in ("depth", "kernel", "expand", "resolution"):
        if k in gene:
            return k
    return "width"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--steps-per-epoch", type=int, default=39,
                   help="5,000 images at batch 128: 39; 10,000: 78")
    p.add_argument("--options", default="before,baseline,ps,random4")
    a = p.parse_args(argv)
    space = load_space("tiny")
    genes = space.choices()
    kids = children(space)
    total = a.epochs * a.steps_per_epoch
    base = resolved(TrainConfig(**BASE, data="digits", epochs=a.epochs))
    print(f"tiny space, {a.epochs} epochs x {a.steps_per_epoch} steps; child-passes per "
          "step (a pass: one child's forward and backward on the batch)")
    for option in a.options.split(","):
        cfg = option_config(base, option)
        # passes[kind][level][who]; level: smallest / middle / largest choice of the gene
        passes: dict = defaultdict(lambda: defaultdict(Counter))
        exact = np.zeros((len(kids), len(genes)))
        rand_res: Counter = Counter()
        for step in range(total):
            kk = stage_children(space, cfg, step, total)
            for j, arch in enumerate(kk):
                who = ("extremes" if j == 0 or (j == len(kk) - 1 and len(kk) > 1)
                       else "random")
                if who == "random":
                    rand_res[arch.resolution] += 1
                code = space.encode(arch)
                for (name, values), c in zip(genes, code):
                    n = len(values)
                    level = "smallest" if c == 0 else "largest" if c == n - 1 else "middle"
                    passes[kind(name)][level][who] += 1 / sum(
                        1 for gn, _ in genes if kind(gn) == kind(name))
                for i, (_, ch) in enumerate(kids):
                    exact[i] += space.encode(ch) == code
        print(f"\noption {option} (method {cfg.method}, res_sampling {cfg.res_sampling}, "
              f"teacher_warmup {cfg.teacher_warmup}, num_random {cfg.num_random})")
        print("| gene kind | smallest choice (extremes + random) | middle choice | "
              "largest choice |\n|---|---|---|---|")
        for k in ("width", "depth", "kernel", "expand", "resolution"):
            cells = []
            for level in ("smallest", "middle", "largest"):
                c = passes[k][level]
                cells.append(f"{(c['extremes'] + c['random']) / total:.2f} "
                             f"({c['extremes'] / total:.2f} + {c['random'] / total:.2f})"
                             if c else "-")
            print(f"| {k} | " + " | ".join(cells) + " |")
        print("random children's resolutions: " + ", ".join(
            f"{r} px {rand_res[r] / total:.2f}/step" for r in sorted(rand_res)))
        print("| child | resolution | passes/step with its choice, mean over genes | "
              "passes/step at its resolution |\n|---|---|---|---|")
        res_col = [g for g, (name, _) in enumerate(genes) if name == "resolution"][0]
        for i, (tag, ch) in enumerate(kids):
            print(f"| {tag} | {ch.resolution} | {exact[i].mean() / total:.2f} | "
                  f"{exact[i][res_col] / total:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
