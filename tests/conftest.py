"""Fixtures shared by the tests: the tiny space, a counting oracle, sessions; a small
stage-wise space and learnable npz data for training tests; one torch thread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nas_search import SearchProblem, Session
from nas_search.problem import Constraints
from nas_search.results import TIMING_COLUMNS
from nas_search.testing import CountingOracle
from supernet import load_space

MAX_MACS = 4e6  # about half of the tiny space's children fit
# A stage-wise space small enough for a training step in milliseconds.
SMALL = """
name: small
resolutions: [12, 16]
stem: {widths: [8, 12], stride: 1, act: swish}
stages:
  - {widths: [8, 16], depths: [1, 2], kernels: [3, 5], expands: [2, 3], stride: 2, se: true}
  - {widths: [16, 24], depths: [1, 2], kernels: [3], expands: [2, 3], stride: 2}
head: {widths: [32, 48], dropout: 0.3}
num_classes: 10
"""


def small_run(tmp_path, space_yaml: str = SMALL) -> tuple[str, str]:
    """(space YAML path, npz data spec) in `tmp_path`: 160 16-px images whose brightness
    tells the class, so a few steps learn something."""
    (tmp_path / "small.yaml").write_text(space_yaml)
    rng = np.random.default_rng(0)
    y = np.arange(160) % 10
    x = (rng.integers(0, 40, (160, 16, 16, 3)) + 20 * y[:, None, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return str(tmp_path / "small.yaml"), f"npz:{tmp_path / 'd.npz'}"


@pytest.fixture
def small(tmp_path) -> tuple[str, str]:
    """`small_run` in the test's tmp_path."""
    return small_run(tmp_path)


def small_config(small: tuple[str, str], tmp_path, **kw):
    """A TrainConfig of a 2-epoch run on `small` (overridden by `kw`)."""
    from supernet.training.train import TrainConfig

    space, data = small
    base = dict(space=space, data=data, epochs=2, batch_size=16, lr=0.2, warmup_epochs=0.5,
                calib_images=32, out=str(tmp_path / "run"), quiet=True, threads=1)
    return TrainConfig(**{**base, **kw})


def noisy_supernet(space_yaml: str):
    """A seeded supernet of the space at `space_yaml` whose 1-d parameters (BN gammas and
    betas, biases) are random: zero-initialised gammas would hide the deep blocks."""
    from supernet import ElasticSupernet, load_space

    torch.manual_seed(0)
    net = ElasticSupernet(load_space(space_yaml))
    for p in net.parameters():
        if p.ndim == 1:
            torch.nn.init.normal_(p, 0, 0.3)
    return net


def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    """One torch thread: on a busy shared 2-core machine two threads per process crawl."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def one_thread_module():
    """`one_thread` for a whole module (`pytestmark = usefixtures("one_thread_module")`)."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """An untrained `tiny` supernet checkpoint recording digits, seed 0."""
    from supernet import ElasticSupernet, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, ElasticSupernet("tiny"), data="digits", seed=0)
    return str(path)


@pytest.fixture(scope="session")
def tiny():
    """The built-in tiny space."""
    return load_space("tiny")


@pytest.fixture
def make_session(tiny):
    """A factory of sessions on the tiny space under MAX_MACS, with a CountingOracle."""
    def make(strategy: str, budget: int = 60, seed: int = 0, evaluator=None,
             max_macs: float | None = MAX_MACS, **problem_kw) -> Session:
        problem = SearchProblem(tiny, constraints=Constraints(max_macs=max_macs), **problem_kw)
        return Session(problem, evaluator or CountingOracle(tiny), strategy=strategy,
                       budget=budget, seed=seed)
    return make


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table]).reset_index(drop=True)


@pytest.fixture
def comparable():
    """A function: a results table without its timing columns (they differ between
    identical runs)."""
    return _comparable
