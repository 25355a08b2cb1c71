"""Training options that close the child-vs-twin gap: alpha-divergence distillation,
teacher warm-up, attentive sampling, the short-run schedule (tiny data, few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import noisy_supernet, small_config

import supernet.training.config as C
import supernet.training.optim as O
import supernet.training.steps as S
import supernet.training.train as T
from supernet import load_space, macs
from supernet.checkpoint import read_checkpoint
from supernet.data.datasets import resize
from supernet.training.distill import adaptive_alpha, alpha_divergence, distill_loss
from supernet.training.optim import make_scheduler
from supernet.training.sampling import attentive_candidates, pick, warmup_children
from supernet.training.steps import sandwich_children, sandwich_step
from supernet.training.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _pq(seed=0, n=6, c=5):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(n, c, generator=g).softmax(1)
    student = torch.randn(n, c, generator=g, dtype=torch.float64).requires_grad_()
    return teacher.double(), student


def _kl(p, q):
    return (p * (p.log() - q.log())).sum(1)


def test_alpha_divergence_is_kl_at_its_limits():
    p, logits = _pq()
    q = logits.detach().softmax(1)
    kl_pq, kl_qp = _kl(p, q), _kl(q, p)
    big = 1e9  # no clipping, to see the divergence itself
    assert torch.allclose(alpha_divergence(logits, p, 1.0, big)[0], kl_pq)
    assert torch.allclose(alpha_divergence(logits, p, 0.0, big)[0], kl_qp)
    # the general formula tends to both KLs as alpha approaches 1 and 0
    for eps in (1e-2, 2e-3):
        assert torch.allclose(alpha_divergence(logits, p, 1 - eps, big)[0], kl_pq, atol=5 * eps)
        assert torch.allclose(alpha_divergence(logits, p, 1 + eps, big)[0], kl_pq, atol=5 * eps)
        assert torch.allclose(alpha_divergence(logits, p, eps, big)[0], kl_qp, atol=5 * eps)
    errs = [(alpha_divergence(logits, p, 1 - e, big)[0] - kl_pq).abs().max() for e in (0.1, 0.01)]
    assert errs[1] < errs[0] / 5


def test_adaptive_alpha_at_alpha_one_has_the_gradient_of_inplace_distillation():
    p, logits = _pq(1)
    loss = adaptive_alpha(logits, p, (1.0, 1.0))
    assert torch.allclose(loss, _kl(p, logits.detach().softmax(1)).mean())  # KL's value
    loss.backward()
    got = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits, p).backward()  # BigNAS: CE to the soft labels, KL's gradient
    assert torch.allclose(got, logits.grad)
    assert torch.equal(distill_loss("ce", logits, p), F.cross_entropy(logits, p))


@pytest.mark.parametrize("alpha", [-1.0, 0.5, 1.0, 1.5])
def test_alpha_surrogate_gradient_is_the_divergence_gradient(alpha):
    p, logits = _pq(2)
    _, surrogate = alpha_divergence(logits, p, alpha, clip=1e9)
    surrogate.sum().backward()
    got = logits.grad.clone()
    logits.grad = None
    q = logits.softmax(1)  # the divergence, differentiated by autograd
    exact = _kl(p, q) if alpha == 1.0 else \
        ((q ** (1 - alpha) * p ** alpha).sum(1) - 1) / (alpha * (alpha - 1))
    exact.sum().backward()
    assert torch.allclose(got, logits.grad, atol=1e-10)


def test_adaptive_alpha_follows_the_larger_divergence_per_image_and_clips():
    p, logits = _pq(3, n=32)
    lo_v, lo_s = alpha_divergence(logits, p, -1.0)
    hi_v, hi_s = alpha_divergence(logits, p, 1.0)
    loss = adaptive_alpha(logits, p)
    assert torch.allclose(loss, torch.maximum(lo_v, hi_v).mean())  # the larger divergence
    loss.backward()
    got = logits.grad.clone()
    logits.grad = None
    torch.where(lo_v > hi_v, lo_s, hi_s).mean().backward()  # ... and its gradient
    assert torch.allclose(got, logits.grad)
    assert (lo_v > hi_v).any() and (lo_v <= hi_v).any()  # both sides occur
    # AlphaNet's clip bounds the importance ratio: a tiny clip changes the loss
    assert not torch.allclose(alpha_divergence(logits, p, -1.0, clip=1.0)[0], lo_v)
    with pytest.raises(ValueError, match="kd: 'kl'"):
        distill_loss("kl", logits, p)


def test_warmup_children_keeps_only_the_largest_during_warmup():
    space = load_space("tiny")
    kids = sandwich_children(space, 0, 3, 2)
    assert warmup_children(kids, 3, 4) == [space.max_arch()]
    assert warmup_children(kids, 4, 4) == kids
    assert warmup_children(kids, 0, 0) == kids


def test_teacher_warmup_trains_only_the_largest_child(small, tmp_path, monkeypatch):
    calls = []
    real = S.sandwich_step

    def spy(model, opt, x, y, children, cfg, dropout, candidates=None):
        calls.append(list(children))
        return real(model, opt, x, y, children, cfg, dropout, candidates)

    monkeypatch.setattr(S, "sandwich_step", spy)
    ck = read_checkpoint(train(small_config(small, tmp_path, teacher_warmup=0.5)))
    space = load_space(small[0])
    steps = 140 // 16
    assert len(calls) == 2 * steps
    assert all(c == [space.max_arch()] for c in calls[:steps])  # the teacher alone ...
    assert all(len(c) == 4 and c[0] == space.max_arch() and c[-1] == space.min_arch()
               for c in calls[steps:])  # ... then the sandwich
    assert ck["history"][0]["kd_loss"] == 0 and ck["history"][1]["kd_loss"] > 0


def test_attentive_candidates_are_seeded_near_in_cost_and_at_the_same_resolution():
    space = load_space("tiny")
    arch = space.sample(np.random.default_rng(5))
    c = attentive_candidates(space, arch, 0, 7, 1, 4)
    assert c == attentive_candidates(space, arch, 0, 7, 1, 4)  # resumable
    assert c != attentive_candidates(space, arch, 0, 8, 1, 4)
    assert c[0] == arch and len(set(c)) == 4
    assert {a.resolution for a in c} == {arch.resolution}
    rng = np.random.default_rng(1)  # nearer in MACs than random children are, on average
    near = np.mean([abs(macs(space, a) - macs(space, arch)) for a in c[1:]])
    far = np.mean([abs(macs(space, space.sample(rng)) - macs(space, arch)) for _ in range(50)])
    assert near < far
    assert attentive_candidates(space, arch, 0, 7, 1, 1) == [arch]
    assert pick([0.3, 0.1, 0.5], "best-up") == 1 and pick([0.3, 0.1, 0.5], "worst-up") == 2


@pytest.mark.parametrize("sampling", ["best-up", "worst-up"])
def test_attentive_sampling_trains_the_candidate_with_the_best_or_worst_loss(small, sampling):
    net = noisy_supernet(small[0])
    space = net.space
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    kids = sandwich_children(space, 0, 3, 1)
    pool = attentive_candidates(space, kids[1], 0, 3, 1, 3)
    cfg = TrainConfig(grad_clip=0.0, channels_last=False, sampling=sampling, kd="alpha")
    opt = torch.optim.SGD(net.parameters(), lr=0.0)

    def grads(children, candidates=None):
        torch.manual_seed(1)
        sandwich_step(net, opt, x, y, children, cfg, 0.3, candidates)
        return [p.grad.clone() if p.grad is not None else None for p in net.parameters()]

    torch.manual_seed(1)  # the step's teacher: the largest child with dropout
    with torch.no_grad():
        soft = net(x, kids[0], dropout=0.3).softmax(1)
        losses = [distill_loss("alpha", net(resize(x, a.resolution), a), soft).item()
                  for a in pool]
    want = pool[int(np.argmin(losses) if sampling == "best-up" else np.argmax(losses))]
    got = grads(kids, {1: pool})
    ref = grads([kids[0], want, kids[2]])
    for g, r in zip(got, ref):
        assert (g is None and r is None) or torch.allclose(g, r, atol=1e-6)


def test_options_resume_bit_identical(small, tmp_path, monkeypatch):
    opts = dict(teacher_warmup=1 / 3, kd="alpha", sampling="best-up", candidates=2, epochs=3,
                kd_labels=0.5)
    full = train(small_config(small, tmp_path, out=str(tmp_path / "full"), **opts))
    real = T.save_checkpoint

    class Stop(Exception):
        pass

    def stop_after_second_epoch(*a, **kw):
        real(*a, **kw)
        if kw["epoch"] == 2:
            raise Stop

    monkeypatch.setattr(T, "save_checkpoint", stop_after_second_epoch)
    cfg = small_config(small, tmp_path, out=str(tmp_path / "cut"), **opts)
    with pytest.raises(Stop):
        train(cfg)
    monkeypatch.setattr(T, "save_checkpoint", real)
    cfg.resume = True
    a, b = read_checkpoint(full), read_checkpoint(train(cfg))
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_floor_at_one_decays_over_the_whole_run():
    p = torch.nn.Parameter(torch.zeros(1))

    def lrs(floor_at: float) -> list[float]:
        opt = torch.optim.SGD([p], lr=1.0)
        sched = make_scheduler(opt, "exp", 100, 10, floor_at=floor_at)
        out = []
        for _ in range(100):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    default, whole = lrs(O.FLOOR_AT), lrs(1.0)
    assert default == lrs(2 / 3)
    assert default[10 + 60] == pytest.approx(O.FLOOR) and default[-1] == pytest.approx(O.FLOOR)
    assert whole[70] > 2 * O.FLOOR and whole[-1] > O.FLOOR  # still decaying at the end
    assert whole[99] == pytest.approx(O.FLOOR ** (89 / 90))


@pytest.mark.parametrize("field,value", [("kd", "kl"), ("teacher_warmup", 1.0),
                                         ("teacher_warmup", -0.5), ("sampling", "best"),
                                         ("candidates", 0), ("floor_at", 0.0),
                                         ("floor_at", 1.5), ("kd_labels", -1.0)])
def test_bad_option_is_a_value_error_naming_the_field(small, tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        train(small_config(small, tmp_path, **{field: value}))


def test_a_checkpoint_from_before_the_options_still_counts_as_the_same_run(small, tmp_path):
    cfg = small_config(small, tmp_path, epochs=1, **C.BEFORE_OPTIONS)  # trained as before them
    path = train(cfg)
    ck = torch.load(path, weights_only=True)
    for k in C.BEFORE_OPTIONS:  # as written before the fields existed
        del ck["recipe"][k]
    torch.save(ck, path)
    assert train(cfg) == path  # done already: not refused, not retrained
    with pytest.raises(ValueError, match="kd 'ce' -> 'alpha'"):
        train(small_config(small, tmp_path, epochs=1, **{**C.BEFORE_OPTIONS, "kd": "alpha"}))


def test_recipes_set_the_random_childrens_resolutions_and_the_label_weight():
    small = C.with_recipe(TrainConfig())
    assert (small.res_sampling, small.kd_labels) == ("independent", 1.0)  # issue 20's
    for name in ("bignas", "attentivenas"):  # as their papers train
        cfg = C.with_recipe(TrainConfig(recipe=name))
        assert (cfg.res_sampling, cfg.kd_labels) == ("paired", 0.0)
    flags = C.with_recipe(TrainConfig(res_sampling="paired", kd_labels=0.0))
    assert (flags.res_sampling, flags.kd_labels) == ("paired", 0.0)  # a flag of 0 wins too
