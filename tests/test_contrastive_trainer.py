"""The one contrastive trainer: the search's trial scores and pre-training's losses are the ones recorded before the
two twin trainers became one; fp16 steps go through a gradient scaler; the NaN policy; a checkpoint resumes exactly."""
import io

import numpy as np
import pytest
import torch

from common.arch import genotypes as G
from common.arch.networks import EvalNetwork
from common.config import ConfigError
from common.contrastive.net import ContrastiveNet
from common.contrastive.trainer import ContrastiveSettings, ContrastiveTrainer, NonFiniteLoss, check_amp
from common.contrastive.views import ViewMaker
from common.device import AMP_CHOICES, Runtime, runtime
from common.labeled import pretrain as P
from common.search.candidate import candidate, run_trial
from common.search.trial import nce_score, trial_context

# Recorded BEFORE the move, with the twin trainers (common/search/candidate.py's CandidateTrainer and
# common/labeled/pretrain.py's PretrainTrainer) on these fixtures, 1 torch thread, on the 2-core AMD EPYC dev machine.
# Per-epoch mean losses of run_trial(genotype, 48 noise images of 16 px, ViewMaker(16), C=6, 4 cells, batch 16, lr 1e-3,
# momentum 0.9, weight decay 3e-4, tau 0.07, proj_dim 32, seed 1, fp32); NCHW unless the case says channels_last.
RECORDED_TRIALS = {
    "DARTS_V2": ("DARTS_V2", {}, [6.129075368245442, 5.613153457641602]),
    "CNAS_ISIC_s5": ("CNAS_ISIC_s5", {}, [4.011534055074056, 3.721731185913086]),
    "DARTS_V2_nce_init_channels_last": ("DARTS_V2", {"learn": False, "channels_last": True},
                                        [6.124930699666341, 5.882666905721028]),
    "CNAS_ISIC_s5_channels_last": ("CNAS_ISIC_s5", {"channels_last": True}, [4.011534055074056, 3.721780776977539]),
}
# common.search.trial.nce_score of CNAS_ISIC_s4 through trial_context (search.py's trial settings below, REPEATS=2):
# epoch losses per repeat
RECORDED_NCE_SCORE = [[3.2471346855163574, 3.395909070968628], [3.5204710960388184, 3.344679355621338]]
# common.labeled.pretrain.pretrain's per-epoch nce_loss on tests/test_pretrain.py's DARTS_V2 EvalNetwork (C=8, 3 cells)
# with lr 0.01 (test_pretrain uses 0.05). The twins ran the views in different orders: the search whole image first,
# then the patches; pre-training the patches first. The one ContrastiveNet keeps the search's order, so the search's
# numbers stay bitwise and pre-training's differ in the last bits only (its shared weights now sum the three passes'
# gradients in another order: 2.094444513320923 and 1.940752387046814 now, rel 1.1e-7 and 6e-8).
RECORDED_PRETRAIN = [2.0944442749023438, 1.9407525062561035]
REL = 1e-6


@pytest.fixture(autouse=True)
def one_thread():
    """The recorded values come from one thread: another count sums in another order (on the CPU, the last bits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n=48, size=16, seed=0):
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _settings(channels_last=False, rt=None, **over):
    kw = dict(batch_size=16, lr=1e-3, momentum=0.9, weight_decay=3e-4, tau=0.07, bank_momentum=0.5, patch_weight=0.5,
              proj_dim=32, seed=1)
    kw.update(over)
    return ContrastiveSettings(rt=rt or runtime("cpu", "off", "on" if channels_last else "off"), **kw)


@pytest.mark.parametrize("case", RECORDED_TRIALS)
def test_search_trial_losses_are_the_recorded_ones(case):
    name, over, recorded = RECORDED_TRIALS[case]
    result = run_trial(candidate(getattr(G, name), 6, 4), _images(), ViewMaker(16), _settings(**over), epochs=2)
    assert result["epoch_losses"] == pytest.approx(recorded, rel=REL)


def test_nce_score_is_the_recorded_one():
    cfg = dict(AMP="auto", CHANNELS_LAST="auto", IMAGE_SIZE=16, COLOR_JITTER=(0.2, 0.2, 0.2, 0.02), CENTER_CROP=0.5,
               PATCH_SCALE=(0.15, 0.5), GRAYSCALE_P=0.2, MEAN=(0.763, 0.545, 0.570), STD=(0.141, 0.152, 0.169),
               LR=1e-3, MOMENTUM=0.9, WEIGHT_DECAY=0.0, TAU=0.07, BANK_MOMENTUM=0.5, PATCH_WEIGHT=0.5, NEGATIVES=None,
               INIT_CHANNELS=4, LAYERS=3, BATCH_SIZE=16, EPOCHS=2, REPEATS=2, SEED=2)
    images = np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    score = nce_score(G.CNAS_ISIC_s4, trial_context({"images": images, "cfg": cfg}, "cpu", 1), progress=False)
    for got, want in zip(score["epoch_losses"], RECORDED_NCE_SCORE, strict=True):
        assert got == pytest.approx(want, rel=REL)


def test_pretraining_losses_are_the_recorded_ones(tmp_path):
    settings = P.PretrainSettings(epochs=2, batch_size=4, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                                  lr=0.01, seed=3)
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    net = EvalNetwork(G.DARTS_V2, 3, C=8, layers=3, auxiliary=True)
    path = P.pretrain(net, images, settings, out_dir=tmp_path, rt=runtime("cpu"), log=lambda *a, **k: None)
    history = torch.load(path, weights_only=True)["history"]
    assert [h["nce_loss"] for h in history] == pytest.approx(RECORDED_PRETRAIN, rel=REL)


def _trainer(rt, **over):
    return ContrastiveTrainer(candidate(G.DARTS_V2, 4, 3), _images(16), ViewMaker(16),
                              _settings(rt=rt, batch_size=8, lr=0.05, **over))


def test_fp16_steps_go_through_the_gradient_scaler():
    """Honest on a CPU: torch autocasts to fp16 there too. A scale so large that the scaled gradients overflow makes a
    step through the scaler a skipped one (weights kept, scale halved); a plain backward() and step would move them."""
    assert not _trainer(runtime("cpu", "off")).scaler.is_enabled()
    assert not _trainer(runtime("cpu", "bf16")).scaler.is_enabled()  # bf16 keeps fp32's range
    trainer = _trainer(Runtime(torch.device("cpu"), torch.float16))  # runtime() refuses fp16 on a CPU; build it
    assert trainer.scaler.is_enabled()
    trainer.fill_bank()
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)
    before = [p.detach().clone() for p in trainer.net.parameters()]
    loss = trainer.step(torch.arange(8))
    assert torch.isfinite(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))
    assert trainer.scaler.get_scale() == 2.0**119
    trainer.scaler = torch.amp.GradScaler("cpu")  # the default scale: these gradients fit, the step is taken
    trainer.step(torch.arange(8))
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))
    assert trainer.state()["scaler"]["scale"] == 2.0**16  # a checkpoint keeps the scale


def test_a_nan_loss_raises_non_finite_loss_at_the_next_check():
    trainer = _trainer(runtime("cpu", "off"), check_every=1)
    trainer.fill_bank()
    trainer.criterion.tau = float("nan")
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 1"):
        trainer.train_epoch()


def test_a_diverged_pretraining_is_one_line_naming_the_levers(tmp_path, monkeypatch):
    features = ContrastiveNet.features
    monkeypatch.setattr(ContrastiveNet, "features", lambda self, x: features(self, x) * float("nan"))
    settings = P.PretrainSettings(epochs=1, batch_size=4, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, lr=0.3)
    net = EvalNetwork(G.DARTS_V2, 3, C=8, layers=3, auxiliary=False)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match=r"pre-training diverged in epoch 1 \(loss became nan\).*PRETRAIN_LR \(now 0.3\)"):
        P.pretrain(net, images, settings, out_dir=tmp_path, rt=runtime("cpu"), log=lambda *a, **k: None)


def test_a_checkpointed_trainer_goes_on_as_the_unbroken_one():
    """state() -> load() into a fresh trainer: the next epoch is the same (bank, momentum, cosine schedule, generator)."""
    unbroken = _trainer(runtime("cpu", "off"), cosine_epochs=3)
    unbroken.fill_bank()
    unbroken.train_epoch()
    buf = io.BytesIO()
    torch.save(unbroken.state(), buf)  # through bytes, as a checkpoint file: state() shares the live tensors
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = _trainer(runtime("cpu", "off"), cosine_epochs=3, seed=9)  # another seed: everything comes from `state`
    resumed.load(state)
    assert resumed.optimizer.param_groups[0]["lr"] == unbroken.optimizer.param_groups[0]["lr"] < 0.05
    assert resumed.train_epoch() == unbroken.train_epoch()


def test_check_amp_takes_every_device_setting_and_refuses_others_in_one_line():
    assert [check_amp(a) for a in AMP_CHOICES] == list(AMP_CHOICES)
    with pytest.raises(ConfigError, match=r"^--AMP=fp32: choose one of auto, bf16, fp16, off \(fp16 on a GPU only\)$"):
        check_amp("fp32")
