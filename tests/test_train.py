"""Supernet training: sandwich rule, inplace distillation, regularisation, LR schedule,
BN calibration, checkpoints and bit-identical resume (a few steps on tiny data)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL, noisy_supernet, small_config

import supernet.training.config as C
import supernet.training.optim as O
import supernet.training.steps as S
import supernet.training.train as T
from supernet import ElasticSupernet, load_checkpoint, load_space
from supernet.checkpoint import read_checkpoint
from supernet.data.datasets import load_data, resize
from supernet.training.evaluation import calibrate_bn, evaluate
from supernet.training.optim import FLOOR, make_scheduler
from supernet.training.steps import sandwich_children, sandwich_step
from supernet.training.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sandwich_children_largest_smallest_and_seeded_random_ones():
    space = load_space("tiny")
    kids = sandwich_children(space, seed=0, step=7, num_random=3)
    assert len(kids) == 5
    assert kids[0] == space.max_arch() and kids[0].resolution == max(space.resolutions)
    assert kids[-1] == space.min_arch() and kids[-1].resolution == min(space.resolutions)
    assert kids == sandwich_children(space, 0, 7, 3)  # the step decides: same on every rank
    others = [sandwich_children(space, 0, s, 3)[1:-1] for s in range(20)]
    assert len({a for k in others for a in k}) > 40
    # paired (BigNAS supplement C): random children at the resolutions in between
    assert {a.resolution for k in others for a in k} == {28}
    free = [sandwich_children(space, 0, s, 3, paired=False)[1:-1] for s in range(20)]
    assert len({a.resolution for k in free for a in k}) == len(space.resolutions)


def test_paired_resolutions_give_each_middle_resolution_once_per_step():
    space = load_space("attentive-mbv3")  # 192 | 224, 256 | 288
    for step in range(10):
        kids = sandwich_children(space, 3, step, 2)
        assert sorted(k.resolution for k in kids) == [192, 224, 256, 288]
    four = [k.resolution for k in sandwich_children(space, 3, 0, 4)[1:-1]]
    assert sorted(four) == [224, 224, 256, 256]  # more children than resolutions: cycled


def test_bignas_recipe_trains_at_the_supplements_four_resolutions():
    """BigNAS supplement C: {192, 224, 288, 320}, paired with the model sizes; bignas-mbv2
    also searches 256, which the bignas recipe does not train at."""
    space = load_space("bignas-mbv2")
    cfg = C.with_recipe(TrainConfig(space="bignas-mbv2", recipe="bignas"))
    res = S.train_resolutions(space, cfg.resolutions)
    assert res == (192, 224, 288, 320)
    for step in range(10):
        kids = sandwich_children(space, 0, step, 2, resolutions=res)
        assert [k.resolution for k in (kids[0], kids[-1])] == [320, 192]
        assert sorted(k.resolution for k in kids[1:-1]) == [224, 288]
    # the small recipe, or a space without those resolutions: all of the space's
    assert S.train_resolutions(space, C.with_recipe(TrainConfig()).resolutions) == \
        space.resolutions
    assert S.train_resolutions(load_space("tiny"), res) == load_space("tiny").resolutions
    with pytest.raises(ValueError, match="resolutions"):
        C.check_config(TrainConfig(resolutions=(224, -1)))


def test_rmsprop_is_tensorflows_eps_inside_the_root():
    """RMSpropTF against TF's update written out: ms from 1, eps inside sqrt, lr in the
    momentum buffer; torch's RMSprop (eps outside, ms from 0) gives another trajectory."""
    from supernet.training.optim import RMSpropTF

    torch.manual_seed(0)
    w0 = torch.randn(5, dtype=torch.float64)
    grads = [torch.randn(5, dtype=torch.float64) * 1e-2 for _ in range(4)]
    lr, rho, mu, eps, wd = 0.1, 0.9, 0.9, 1e-3, 1e-2
    p = torch.nn.Parameter(w0.clone())
    opt = RMSpropTF([p], lr=lr, rho=rho, momentum=mu, eps=eps, weight_decay=wd)
    w, ms, mom = w0.clone(), torch.ones(5, dtype=torch.float64), torch.zeros(5,
                                                                            dtype=torch.float64)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        g = g + wd * w
        ms = rho * ms + (1 - rho) * g * g
        mom = mu * mom + lr * g / torch.sqrt(ms + eps)
        w = w - mom
        assert torch.allclose(p.detach(), w, atol=1e-12)
    q = torch.nn.Parameter(w0.clone())
    ref = torch.optim.RMSprop([q], lr=lr, alpha=rho, momentum=mu, eps=eps, weight_decay=wd)
    for g in grads:
        q.grad = g.clone()
        ref.step()
    assert (q.detach() - w).abs().max() > 1e-3
    net = ElasticSupernet("tiny")
    cfg = C.with_recipe(TrainConfig(recipe="bignas"))
    assert isinstance(O.make_optimizer(net, cfg), RMSpropTF)


@pytest.mark.parametrize("kd_labels", [0.0, 0.5])
def test_sandwich_loss_is_label_loss_of_largest_plus_detached_distillation(small, kd_labels):
    net = noisy_supernet(small[0])
    space = net.space
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    kids = sandwich_children(space, 0, 3, 2)
    cfg = TrainConfig(label_smoothing=0.1, grad_clip=0.0, channels_last=False,
                      kd_labels=kd_labels)
    torch.manual_seed(1)
    loss, kd = sandwich_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, kids, cfg,
                             dropout=0.3)
    got = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    # the reference: one backward per child, dropout and smoothing on the largest alone
    net.zero_grad()
    torch.manual_seed(1)
    out = net(resize(x, kids[0].resolution), kids[0], dropout=0.3)
    ref_loss = F.cross_entropy(out, y, label_smoothing=0.1)
    ref_loss.backward(retain_graph=True)
    soft = out.detach().softmax(1)
    ref_kd = 0.0
    for a in kids[1:]:
        child = net(resize(x, a.resolution), a)
        lk = -(soft * child.log_softmax(1)).sum(1).mean()
        # kd_labels: the labels' loss (smoothed as the largest child's) joins the child's
        (lk + kd_labels * F.cross_entropy(child, y, label_smoothing=0.1)).backward()
        ref_kd += lk.item()  # the logged distillation loss stays the soft labels' alone
    assert math.isclose(loss.item(), ref_loss.item(), rel_tol=1e-6)
    assert math.isclose(kd.item() * 3, ref_kd, rel_tol=1e-5)
    ref = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert ref.keys() == got.keys()
    for n in ref:
        assert torch.allclose(got[n], ref[n], atol=1e-6, rtol=1e-4), n


def test_training_normalises_with_batch_statistics(small):
    space = load_space(small[0])
    net = ElasticSupernet(space)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    kids = sandwich_children(space, 0, 0, 2)
    cfg = TrainConfig(channels_last=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    before = sandwich_step(net, opt, x, y, kids, cfg, 0.0)
    for m in net.modules():  # running statistics must play no part in a training step
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(9.0)
    after = sandwich_step(net, opt, x, y, kids, cfg, 0.0)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])


def test_automatic_choices_channels_last_on_cpu_and_threads():
    r = C.resolved(TrainConfig())
    assert r.channels_last is True and r.threads >= 1
    assert C.resolved(TrainConfig(channels_last=False, threads=3)).threads == 3
    assert C.resolved(TrainConfig(channels_last=False)).channels_last is False


def test_one_optimizer_step_with_weight_decay_on_weights_only_and_clipping(small, tmp_path):
    cfg = small_config(small, tmp_path, grad_clip=1e-3, weight_decay=0.0, channels_last=False)
    space = load_space(cfg.space)
    net = ElasticSupernet(space)
    groups = O.param_groups(net, 1e-4)
    assert all(p.ndim > 1 for p in groups[0]["params"]) and groups[0]["weight_decay"] == 1e-4
    assert all(p.ndim == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    calls = []
    step = opt.step
    opt.step = lambda: calls.append(1) or step()
    before = [p.detach().clone() for p in net.parameters()]
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    sandwich_step(net, opt, x, y, sandwich_children(space, 0, 0, 2), cfg, 0.0)
    assert calls == [1]  # four children, one optimizer step (and so one weight decay)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(net.parameters(), before)))
    assert 0 < moved <= 1e-3 * 1.0001  # lr 1: the step is the clipped gradient


def test_lr_schedule_warmup_exponential_decay_with_floor_and_cosine():
    p = torch.nn.Parameter(torch.zeros(1))

    def lrs(schedule: str, total=100, warm=10) -> list[float]:
        opt = torch.optim.SGD([p], lr=0.4)
        sched = make_scheduler(opt, schedule, total, warm)
        out = []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    e = lrs("exp")
    assert e[0] == pytest.approx(0.04) and e[4] == pytest.approx(0.2)  # linear warm-up
    assert e[9] == pytest.approx(0.4)
    assert np.all(np.diff(e[:10]) > 0) and e[10] == pytest.approx(0.4)
    assert np.all(np.diff(e[10:]) <= 1e-12) and e[20] < 0.4 * 0.8
    assert min(e) == pytest.approx(0.4 * FLOOR)  # held at 5% of the initial LR ...
    assert e[-30:] == [pytest.approx(0.4 * FLOOR)] * 30  # ... for the last stretch
    c = lrs("cosine")
    assert c[10] == pytest.approx(0.4) and c[-1] < 0.4 * 0.01 and c[55] == pytest.approx(0.2)
    assert lrs("exp", warm=0)[0] == pytest.approx(0.4)


def test_calibrate_bn_recomputes_exact_statistics_of_the_child(small):
    space = load_space(small[0])
    net = ElasticSupernet(space).train()
    arch = space.min_arch()
    x = torch.randn(40, 3, 16, 16)
    loader = [(x[i:i + 10], None) for i in range(0, 40, 10)]
    assert calibrate_bn(net, arch, loader, 30) == 30
    h = net.stem_conv(resize(x[:30], arch.resolution), arch.stem)
    assert torch.allclose(net.stem_bn.running_mean[:arch.stem], h.mean((0, 2, 3)), atol=1e-5)
    assert net.training and net.stem_bn.momentum == 0.1  # state restored
    res = evaluate(net, arch, [(x[:10], torch.arange(10))])
    assert 0 <= res.top1 <= 1 and res.n == 10 and res.loss > 0
    # evaluation sees base-resolution images through the same bicubic resize as training
    pre = evaluate(net, arch, [(resize(x[:10], arch.resolution), torch.arange(10))])
    assert pre == res


def test_train_writes_checkpoint_log_and_learns(small, tmp_path, capsys):
    cfg = small_config(small, tmp_path, epochs=4, quiet=False)
    path = train(cfg)
    assert path == tmp_path / "run" / "supernet.pt"
    ck = read_checkpoint(path)  # weights_only=True inside
    assert ck["completed"] and ck["epoch"] == 4 and ck["data"] == cfg.data and ck["seed"] == 0
    assert ck["config"]["out"] == cfg.out and ck["result"]["split"] == "val"
    net, extra = load_checkpoint(path, cfg.space)
    assert isinstance(net, ElasticSupernet)
    assert extra["step"] == 4 * (140 // 16)  # 14 of each class's 16 images train
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(T.LOG_FIELDS) <= rows[0].keys()
    assert float(rows[-1]["loss"]) < 0.85 * float(rows[0]["loss"])
    assert max(float(r["val_top1_max"]) for r in rows) >= 0.3  # chance is 0.1
    out = capsys.readouterr()
    assert "epoch   4/4" in out.out and "val top-1 min" in out.out
    assert "epoch 1/4" in out.err  # the progress bar


def test_a_completed_run_returns_at_once_and_another_recipe_is_refused(small, tmp_path,
                                                                       monkeypatch):
    cfg = small_config(small, tmp_path, epochs=1)
    path = train(cfg)
    monkeypatch.setattr(T, "_run", lambda *a: pytest.fail("trained again"))
    assert train(cfg) == path
    again = small_config(small, tmp_path, epochs=1, workers=1, quiet=False, resume=True)
    assert train(again) == path
    with pytest.raises(ValueError, match="epochs 1 -> 2"):
        train(small_config(small, tmp_path, epochs=2))
    with pytest.raises(ValueError, match="space 'small' -> 'tiny'"):
        train(small_config(small, tmp_path, epochs=1, space="tiny"))


class _Stop(Exception):
    pass


def test_resume_after_a_stop_ends_bit_identical(small, tmp_path, monkeypatch):
    full = train(small_config(small, tmp_path, out=str(tmp_path / "full"), epochs=3,
                              schedule="exp"))
    saves = []
    real = T.save_checkpoint

    def stop_after_first_epoch(*a, **kw):
        real(*a, **kw)
        saves.append(kw["epoch"])
        if kw["epoch"] == 1:
            raise _Stop  # as if killed right after the epoch's checkpoint

    monkeypatch.setattr(T, "save_checkpoint", stop_after_first_epoch)
    cfg = small_config(small, tmp_path, out=str(tmp_path / "cut"), epochs=3)
    with pytest.raises(_Stop):
        train(cfg)
    cfg.resume = True
    cut = train(cfg)
    assert saves == [1, 2, 3]
    a, b = read_checkpoint(full), read_checkpoint(cut)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    with open(tmp_path / "cut" / "log.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def test_without_resume_an_unfinished_run_starts_afresh(small, tmp_path, monkeypatch):
    real = T.save_checkpoint

    def stop(*a, **kw):
        real(*a, **kw)
        raise _Stop

    monkeypatch.setattr(T, "save_checkpoint", stop)
    with pytest.raises(_Stop):
        train(small_config(small, tmp_path))
    monkeypatch.setattr(T, "save_checkpoint", real)
    path = train(small_config(small, tmp_path))
    assert [r["epoch"] for r in read_checkpoint(path)["history"]] == [1, 2]


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", 0), ("lr", -1.0),
                                         ("num_random", -1), ("schedule", "step"),
                                         ("warmup_epochs", -1.0), ("device", "tpu"),
                                         ("label_smoothing", 1.0), ("calib_images", 0),
                                         ("batch_size", 4096)])
def test_bad_config_is_a_value_error_naming_the_field(small, tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        train(small_config(small, tmp_path, **{field: value}))
    assert not (tmp_path / "run" / "supernet.pt").exists()


def test_cosine_bf16_and_contiguous_format_also_train(small, tmp_path):
    cfg = small_config(small, tmp_path, epochs=1, schedule="cosine", bf16=True, channels_last=False,
               num_random=0)
    ck = read_checkpoint(train(cfg))
    assert ck["completed"] and math.isfinite(ck["history"][0]["loss"])
    fp32 = read_checkpoint(train(small_config(small, tmp_path, out=str(tmp_path / "fp32"), epochs=1,
                                      schedule="cosine", channels_last=False, num_random=0)))
    assert fp32["history"][0]["loss"] != ck["history"][0]["loss"]  # bf16 did compute


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error(small, tmp_path):
    with pytest.raises(ValueError, match="device: 'cuda' is not available"):
        train(small_config(small, tmp_path, device="cuda"))


def test_digits_default_data_with_a_few_steps(tmp_path):
    data = load_data("digits", 16)
    assert data.num_classes == 10 and data.test is not None
    cfg = TrainConfig(space=SMALL_PATH(tmp_path), data="digits", epochs=1, batch_size=256,
                      calib_images=64, out=str(tmp_path / "d"), quiet=True, threads=1)
    result = read_checkpoint(train(cfg))["result"]
    assert result["split"] == "test" and 0 <= result["min_top1"] <= 1


def SMALL_PATH(tmp_path) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(SMALL)
    return str(p)
