"""A search trial: bank and step see the same features, all genotypes get the same random draws, nothing outlives it."""
import weakref

import pytest
import torch
import torch.nn.functional as F

from common.arch import genotypes as G
from common.contrastive.trainer import ContrastiveSettings, ContrastiveTrainer, NonFiniteLoss
from common.contrastive.views import ViewMaker
from common.device import runtime
from common.search.candidate import candidate, run_trial

SIZE = 16  # px, tiny images and views


def _images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, SIZE, SIZE, 3), dtype=torch.uint8, generator=g)


def _settings(**over):
    kw = dict(lr=0.05, momentum=0.9, weight_decay=3e-4, tau=0.1, bank_momentum=0.5, patch_weight=0.5, batch_size=8,
              rt=runtime("cpu", "off", "on"), seed=0, proj_dim=16)
    kw.update(over)
    return ContrastiveSettings(**kw)


def _net(genotype=G.DARTS_V2):
    return candidate(genotype, 4, 3)  # C=4, 3 cells


class _Recorder:
    """Wraps a trainer's ViewMaker and negative sampler and keeps every tensor they hand out, in order."""

    def __init__(self):
        self.views, self.batches, self.negatives = [], [], []

    def __call__(self, trainer):
        views, sample = trainer.views, trainer.criterion.bank.sample_negatives

        def recording_views(images, generator):
            whole, patches = views(images, generator)
            self.views.append((whole.clone(), patches.clone()))
            return whole, patches

        def recording_sample(idx, k, generator=None):
            self.batches.append(idx.clone())
            self.negatives.append(sample(idx, k, generator).clone())
            return self.negatives[-1]

        trainer.views = recording_views
        trainer.criterion.bank.sample_negatives = recording_sample


def test_bank_fill_and_training_step_give_the_same_whole_image_feature():
    images = _images()
    fixed = ViewMaker(SIZE)
    # the same views on every call, so the bank fill and the step see the same input batch
    views = lambda imgs, generator: fixed(imgs, torch.Generator().manual_seed(1))  # noqa: E731
    trainer = ContrastiveTrainer(_net(), images, views, _settings())
    trainer.fill_bank()
    bank = trainer.criterion.bank.vectors.clone()
    assert torch.allclose(bank.norm(dim=1), torch.ones(len(images)))  # every row filled

    seen = []
    trainer.net.register_forward_hook(lambda module, args, out: seen.append(out[0].detach().clone()))
    idx = torch.arange(8)  # the first fill batch (16 images in batches of 8), in the same order
    trainer.step(idx)
    (f_whole,) = seen
    torch.testing.assert_close(F.normalize(f_whole, dim=1), bank[idx], rtol=1e-4, atol=1e-5)


def test_fill_bank_splits_the_images_evenly():
    images = _images(n=17)
    sizes = []
    views = lambda imgs, generator: (sizes.append(len(imgs)), ViewMaker(SIZE)(imgs, generator))[1]  # noqa: E731
    trainer = ContrastiveTrainer(_net(), images, views, _settings(batch_size=8))
    trainer.fill_bank()
    assert sizes == [6, 6, 5]  # not 8, 8, 1: no image is normalised within a one-image batch
    assert torch.allclose(trainer.criterion.bank.vectors.norm(dim=1), torch.ones(17))


def _record_trial(genotype, seed):
    rec = _Recorder()
    result = run_trial(_net(genotype), _images(), ViewMaker(SIZE), _settings(seed=seed), epochs=2, on_trainer=rec)
    return rec, result


def test_different_genotypes_with_one_seed_see_the_same_views_negatives_and_batches():
    a, result_a = _record_trial(G.DARTS_V2, seed=3)
    b, result_b = _record_trial(G.CNAS_ISIC_s5, seed=3)
    assert len(a.views) == 2 + 2 * 2  # fill: 2 batches; 2 epochs of 2 steps
    assert len(a.batches) == len(a.negatives) == 2 * 2
    for (wa, pa), (wb, pb) in zip(a.views, b.views, strict=True):
        assert torch.equal(wa, wb) and torch.equal(pa, pb)
    for xa, xb in zip(a.batches + a.negatives, b.batches + b.negatives, strict=True):
        assert torch.equal(xa, xb)
    assert result_a["epoch_losses"] != result_b["epoch_losses"]  # the networks themselves differ

    c, _ = _record_trial(G.DARTS_V2, seed=4)  # another seed draws otherwise: the recording is not trivially equal
    assert not torch.equal(a.views[0][0], c.views[0][0])
    assert not all(torch.equal(x, y) for x, y in zip(a.batches, c.batches))


def test_run_trial_releases_the_trainer_when_it_returns():
    refs = []
    keep = lambda trainer: refs.append(weakref.ref(trainer))  # noqa: E731
    result = run_trial(_net(), _images(), ViewMaker(SIZE), _settings(), epochs=1, on_trainer=keep)
    assert result["loss"] > 0 and len(refs) == 1
    assert refs[0]() is None  # freed by reference counting alone, no gc.collect() needed


def _nan_loss(trainer):
    trainer.criterion.tau = float("nan")


def _failing_views(trainer):
    def views(images, generator):
        raise RuntimeError("views failed")

    trainer.views = views


@pytest.mark.parametrize("breaks", [_nan_loss, _failing_views], ids=["nan-loss", "error-in-fill"])
def test_run_trial_releases_the_trainer_when_it_raises(breaks):
    refs = []

    def on_trainer(trainer):
        refs.append(weakref.ref(trainer))
        breaks(trainer)

    try:
        run_trial(_net(), _images(), ViewMaker(SIZE), _settings(), epochs=1, on_trainer=on_trainer)
    except (NonFiniteLoss, RuntimeError) as exc:
        assert exc.__traceback__ is not None  # the exception and its traceback are still alive here...
        assert refs[0]() is None  # ...yet hold no reference to the trainer
    else:
        pytest.fail("the broken trial did not raise")


def test_run_trial_asks_the_stop_rule_after_every_epoch_but_the_last():
    seen = []

    def stop(losses):
        seen.append(list(losses))
        return "enough" if len(losses) == 2 else None

    stopped = run_trial(_net(), _images(), ViewMaker(SIZE), _settings(), epochs=4, stop=stop)
    assert len(stopped["epoch_losses"]) == 2 and stopped["stopped"] == "enough"
    assert stopped["loss"] == stopped["epoch_losses"][-1] and [len(s) for s in seen] == [1, 2]
    seen.clear()
    full = run_trial(_net(), _images(), ViewMaker(SIZE), _settings(), epochs=2, stop=lambda losses: seen.append(1))
    assert full["stopped"] is None and len(full["epoch_losses"]) == 2 and seen == [1]  # not after the last epoch
    assert full["epoch_losses"] == stopped["epoch_losses"]  # the rule only cuts the curve short
