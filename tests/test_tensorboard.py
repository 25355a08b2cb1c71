"""Run logs: the training loop talks to one logger interface (loss, distillation loss, LR,
images/s per step; val top-1 and skipped images per epoch; the settings as text); the
TensorBoard backend writes them, a resumed run shows each step once, and without the
tensorboard package nothing changes unless it is asked for (then one line, exit 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import small_config

import supernet.training.logger as L
import supernet.training.train as T
from supernet.training.cli import main as train_main
from supernet.training.train import train

STEPS = 140 // 16  # 14 of each class's 16 images train, batch 16
STEP_TAGS = {"train/loss", "train/kd_loss", "train/lr", "train/images_per_s"}
EPOCH_TAGS = {"val/top1_min", "val/top1_max", "train/skipped_images"}


class Recorder:
    """A RunLogger keeping what it is given."""

    def __init__(self):
        self.scalar_calls: list[tuple[int, dict]] = []
        self.texts: list[tuple[str, str, int]] = []
        self.closed = False

    def scalars(self, values, step: int) -> None:
        self.scalar_calls.append((step, {k: float(v) for k, v in values.items()}))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.texts.append((tag, text, step))

    def close(self) -> None:
        self.closed = True


def _events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _log_csv(run: Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def test_the_loop_logs_steps_epochs_and_settings_through_the_interface(small, tmp_path,
                                                                      monkeypatch):
    rec = Recorder()
    opened = []

    def fake_open(log_dir, tensorboard, enabled=True, purge_step=None):
        opened.append((Path(log_dir), tensorboard, enabled, purge_step))
        return rec

    monkeypatch.setattr(T, "open_logger", fake_open)
    train(small_config(small, tmp_path, epochs=2))
    assert opened == [(tmp_path / "run", None, True, 0)]  # default: the out folder
    per_step = [(s, v) for s, v in rec.scalar_calls if set(v) == STEP_TAGS]
    per_epoch = [(s, v) for s, v in rec.scalar_calls if set(v) == EPOCH_TAGS]
    assert len(per_step) + len(per_epoch) == len(rec.scalar_calls)
    assert [s for s, _ in per_step] == list(range(1, 2 * STEPS + 1))  # steps done
    assert all(v["train/images_per_s"] > 0 and v["train/lr"] > 0 for _, v in per_step)
    assert [s for s, _ in per_epoch] == [STEPS, 2 * STEPS]  # at the end of each epoch
    rows = _log_csv(tmp_path / "run")  # log.csv stays, and agrees
    assert [v["val/top1_max"] for _, v in per_epoch] == \
        [pytest.approx(float(r["val_top1_max"])) for r in rows]
    ((tag, text, step),) = rec.texts
    assert tag == "settings" and step == 0 and "recipe small" in text and "| lr | 0.2 |" in text
    assert rec.closed


@pytest.fixture
def tensorboard():
    pytest.importorskip("tensorboard", reason="the tensorboard package (extra [tb])")


def test_tensorboard_holds_the_scalars_and_settings(tensorboard, small, tmp_path):
    logs = tmp_path / "tb"
    train(small_config(small, tmp_path, epochs=2, tensorboard=True, log_dir=str(logs)))
    acc = _events(logs)
    assert STEP_TAGS | EPOCH_TAGS <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 2 * STEPS + 1))
    rows = _log_csv(tmp_path / "run")
    assert [e.value for e in acc.Scalars("val/top1_min")] == \
        [pytest.approx(float(r["val_top1_min"])) for r in rows]
    assert "settings/text_summary" in acc.Tags()["tensors"]
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))  # all in --log-dir


def test_a_resumed_run_shows_each_step_once(tensorboard, small, tmp_path, monkeypatch):
    real = T.save_checkpoint

    def killed_in_epoch_2(*a, **kw):
        if kw["epoch"] == 2:
            raise KeyboardInterrupt  # epoch 2 logged, its checkpoint never written
        real(*a, **kw)

    monkeypatch.setattr(T, "save_checkpoint", killed_in_epoch_2)
    cfg = small_config(small, tmp_path, epochs=3, tensorboard=True)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(T, "save_checkpoint", real)
    cfg.resume = True
    train(cfg)
    acc = _events(tmp_path / "run")
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 3 * STEPS + 1))
    assert [e.step for e in acc.Scalars("val/top1_max")] == [STEPS, 2 * STEPS, 3 * STEPS]


def test_without_tensorboard_nothing_changes_unless_asked_for(small, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.setattr(L, "tensorboard_available", lambda: False)
    assert isinstance(L.open_logger(tmp_path, None), L.NullLogger)
    n = torch.get_num_threads()
    try:
        train(small_config(small, tmp_path, epochs=1))
        space, data = small
        asked = ["--space", space, "--data", data, "--out", str(tmp_path / "tb"),
                 "--tensorboard"]
        assert train_main(asked) == 2
    finally:
        torch.set_num_threads(n)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["log.csv", "supernet.pt"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nas-train: error: tensorboard:" in err
    assert "pip install 'nas-supernet[tb]'" in err and not (tmp_path / "tb").exists()


def test_a_null_logger_never_reads_a_tensor():
    class Exploding:
        def __float__(self):
            raise AssertionError("read")

    log = L.open_logger("unused", tensorboard=False)
    log.scalars({"x": Exploding()}, 0)
    log.text("t", "x")
    log.close()
    assert L.markdown_table({"a": 1, "b": None}).splitlines()[2:] == ["| a | 1 |", "| b |  |"]


# ---- nas-search -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A finished random search of the tiny space with two MACs targets (the oracle)."""
    from nas_search import SearchConfig, run_search
    from nas_search.testing import OracleEvaluator
    from supernet import load_space

    out = tmp_path_factory.mktemp("search") / "random"
    run_search(SearchConfig(strategy="random", out=str(out), budget=70, seed=0, space="tiny",
                            targets=(3e6, 6e6), min_acc=0.7),
               evaluator=OracleEvaluator(load_space("tiny"), noise=0.08))
    return out


def test_a_search_logs_hypervolume_and_best_top1_per_target(tensorboard, search_run):
    import json

    import numpy as np

    from nas_search.results import read_results
    from nas_search.search_log import SUFFIX, log_search

    assert log_search(search_run) == search_run
    assert log_search(search_run) == search_run  # again (a resumed run): replaced, not added
    assert len(list(search_run.glob(f"events.out.tfevents.*{SUFFIX}"))) == 1
    history = json.loads((search_run / "summary.json").read_text())["hypervolume"]["history"]
    acc = _events(search_run)
    hv = acc.Scalars("search/hypervolume")
    assert [e.step for e in hv] == [h["evaluations"] for h in history]
    assert [e.value for e in hv] == [pytest.approx(h["hypervolume"]) for h in history]
    table = read_results(search_run / "results.csv")
    for name, limit in (("3M", 3e6), ("6M", 6e6)):
        logged = {e.step: e.value for e in acc.Scalars(f"search/best_top1/{name}")}
        for n, value in logged.items():
            rows = table.iloc[:n]
            ok = rows["feasible"].to_numpy(bool) & (rows["macs"].to_numpy(float) <= limit)
            assert value == pytest.approx(np.max(rows["top1"].to_numpy()[ok]))
        assert logged[history[-1]["evaluations"]] == pytest.approx(json.loads(
            (search_run / "summary.json").read_text())["best_per_target"][name]["top1"])
    assert "search/settings/text_summary" in acc.Tags()["tensors"]


def test_a_search_without_tensorboard_logs_nothing(search_run, tmp_path, monkeypatch):
    from nas_search.search_log import log_search

    monkeypatch.setattr(L, "tensorboard_available", lambda: False)
    assert log_search(search_run, log_dir=tmp_path / "tb") is None
    assert not (tmp_path / "tb").exists()
    with pytest.raises(ValueError, match="tensorboard package is not installed"):
        log_search(search_run, tensorboard=True)
