"""Sandwich-step speed on CPU: printed figures, not a timed test.

1. One sandwich step (largest, 2 random, smallest; batch 16) of `tiny` at 32 px and
   `attentive-mbv3` at 192 px: images/s, and the step time against the ideal, the sum
   of the same four children's separate forward+backward times (target ratio <= 1.10).
2. With `--reference FILE` (a workload JSON recorded from AttentiveNAS's own code on the
   development machine; not shipped with the repository), a replay of it: the children,
   batch and resolution of a run of AttentiveNAS's code (median step 15.1 s there), with
   our median step next to it (aim: at most half), plus BN recalibration of 64 images.

    python benchmarks/train_step.py [--threads 2] [--steps 5] [--reference FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from supernet import ElasticSupernet, load_space
from supernet.spaces.space import Arch, SearchSpace
from supernet.training.config import TrainConfig, resolved
from supernet.training.evaluation import calibrate_bn
from supernet.training.steps import sandwich_step

CFG = resolved(TrainConfig())  # label smoothing, clipping, channels_last as in training
_FMT = torch.channels_last if CFG.channels_last else torch.contiguous_format


def _setup(space: SearchSpace, res: int, batch: int):
    torch.manual_seed(0)
    net = ElasticSupernet(space).train()  # inputs channels_last, as in training
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=1e-5)
    x = torch.randn(batch, 3, res, res).contiguous(memory_format=_FMT)
    y = torch.randint(0, space.num_classes, (batch,))
    return net, opt, x, y


def _children(space: SearchSpace, res: int) -> list[Arch]:
    rng = np.random.default_rng(0)
    kids = [space.max_arch(), space.sample(rng), space.sample(rng), space.min_arch()]
    return [dataclasses.replace(a, resolution=res) for a in kids]


def step_vs_ideal(name: str, res: int, batch: int, repeats: int) -> None:
    """Print the sandwich step time, images/s and the ratio to the separate children.

    Step and children are timed in turn, round after round, so that load from other
    jobs on a shared machine hits both alike; medians over the rounds.
    """
    space = load_space(name)
    kids = _children(space, res)
    net, opt, x, y = _setup(space, res, batch)

    def step():
        sandwich_step(net, opt, x, y, kids, CFG, space.dropout)

    def alone(a: Arch):
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x, a), y).backward()

    for _ in range(2):  # warm-up: first calls pick kernels
        step()
        for a in kids:
            alone(a)
    times: list[list[float]] = [[] for _ in range(len(kids) + 1)]
    for _ in range(repeats):
        for i, fn in enumerate([step, *(lambda a=a: alone(a) for a in kids)]):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    step_s, *parts = (statistics.median(t) for t in times)
    ideal = sum(parts)
    print(f"{name:15s} {res:3d} px  batch {batch}: step {step_s:6.3f} s  "
          f"{batch / step_s:6.1f} img/s  ideal {ideal:6.3f} s "
          f"({' + '.join(f'{p:.3f}' for p in parts)})  ratio {step_s / ideal:.3f}")


def replay(workload: Path, steps_cap: int | None) -> None:
    """Replay the AttentiveNAS workload and print our median step next to theirs."""
    w = json.loads(workload.read_text())
    space = load_space(w["space"])
    res, batch = w["input_resolution"], w["batch"]
    net, opt, x, y = _setup(space, res, batch)
    steps = [[space.arch_from_dict(c) for c in s["children"]] for s in w["steps"]]
    if steps_cap:
        steps = steps[:steps_cap]
    ts = []
    for kids in steps:  # all children at the workload's resolution, as recorded
        kids = [dataclasses.replace(a, resolution=res) for a in kids]
        t = time.perf_counter()
        sandwich_step(net, opt, x, y, kids, CFG, space.dropout)
        ts.append(time.perf_counter() - t)
    ref = w["reference"]
    # the first 2 steps are warm-up, as in the reference; fewer replayed steps keep one
    warm = min(2, len(ts) - 1)
    ours = statistics.median(ts[warm:])
    print(f"AttentiveNAS workload ({len(ts)} steps, {warm} of them warm-up, {res} px, "
          f"batch {batch}): median step "
          f"{ours:.2f} s here vs {ref['step_s_median']:.2f} s for AttentiveNAS's code "
          f"(ratio {ours / ref['step_s_median']:.2f}; steps {', '.join(f'{t:.2f}' for t in ts)})")
    for tag, arch, r in (("min_child_192", space.min_arch(), 192),
                         ("max_child_288", space.max_arch(), 288)):
        imgs = torch.randn(64, 3, r, r).contiguous(memory_format=_FMT)
        loader = [(imgs[i:i + 16], None) for i in range(0, 64, 16)]
        arch = dataclasses.replace(arch, resolution=r)
        t = time.perf_counter()
        calibrate_bn(net, arch, loader, 64)
        dt = time.perf_counter() - t
        print(f"BN recalibration, 64 images, {tag}: {dt:.2f} s here vs "
              f"{ref['bn_recalibration_64_images_s'][tag]:.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads (reference: 2)")
    p.add_argument("--steps", type=int, default=5,
                   help="timed rounds (tiny: 4x as many)")
    p.add_argument("--reference", type=Path, default=None, metavar="FILE",
                   help="AttentiveNAS workload JSON to replay (without it: no replay)")
    p.add_argument("--skip-replay", action="store_true")
    p.add_argument("--replay-steps", type=int, default=None, help="replay only the first N")
    a = p.parse_args()
    if a.replay_steps is not None and a.replay_steps < 1:
        p.error(f"--replay-steps: {a.replay_steps} is not allowed; expected an integer >= 1")
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, channels_last "
          f"{CFG.channels_last}")
    step_vs_ideal("tiny", 32, 16, 4 * a.steps)
    step_vs_ideal("attentive-mbv3", 192, 16, a.steps)
    if a.reference is None:
        print("replay skipped: no --reference FILE (an AttentiveNAS workload JSON)")
    elif not a.skip_replay:
        replay(a.reference, a.replay_steps)


if __name__ == "__main__":
    main()
