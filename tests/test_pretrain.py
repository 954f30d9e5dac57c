"""Self-supervised pre-training of the eval network: resume after a kill gives the uninterrupted weights, pretrained.pt
loads into a genotype's network and a torchvision ARCH (and is refused by another network), unlabeled images."""
import numpy as np
import pytest
import torch

from common.arch.baselines import WithAux, build_baseline
from common.arch.genotypes import DARTS_V2
from common.arch.networks import EvalNetwork
from common.config import ConfigError
from common.data.layouts import Record
from common.data.unlabeled import decode_records, folder_images, held_out_keys
from common.device import runtime
from common.labeled import pretrain as P

SETTINGS = P.PretrainSettings(epochs=2, batch_size=4, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                              lr=0.05, seed=3)


def images(n=10, size=32):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def darts(C=8, aux=True):
    torch.manual_seed(0)
    return EvalNetwork(DARTS_V2, 3, C=C, layers=3, auxiliary=aux)


def test_a_killed_pretraining_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    rt = runtime("cpu")
    whole = P.pretrain(darts(), images(), SETTINGS, out_dir=tmp_path, rt=rt, meta={"arch": None}, log=lambda *a, **k: None)
    assert whole == tmp_path / P.PRETRAINED and not (tmp_path / P.CKPT).exists()  # the bank state is dropped at the end
    reference = torch.load(whole, weights_only=True)

    killed = tmp_path / "killed"
    killed.mkdir()
    save = P.save_checkpoint

    def kill_after_first_epoch(path, obj):  # a kill right after epoch 1's checkpoint is on disk
        save(path, obj)
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "save_checkpoint", kill_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        P.pretrain(darts(), images(), SETTINGS, out_dir=killed, rt=rt, log=lambda *a, **k: None)
    monkeypatch.undo()
    assert (killed / P.CKPT).exists() and not (killed / P.PRETRAINED).exists()
    assert len((killed / P.HISTORY).read_text().splitlines()) == 1

    lines = []
    P.pretrain(darts(), images(), SETTINGS, out_dir=killed, rt=rt, log=lambda s, **k: lines.append(s))
    assert any("resumed" in line and "after epoch 1" in line for line in lines)
    resumed = torch.load(killed / P.PRETRAINED, weights_only=True)
    assert resumed["model"].keys() == reference["model"].keys()
    for k, v in reference["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert [h["nce_loss"] for h in resumed["history"]] == [h["nce_loss"] for h in reference["history"]]
    assert len((killed / P.HISTORY).read_text().splitlines()) == 2
    assert P.pretrain(darts(), images(), SETTINGS, out_dir=killed, rt=rt, log=lines.append) == killed / P.PRETRAINED


def test_pretrained_weights_load_into_a_fresh_network_and_only_a_fitting_one(tmp_path):
    net = darts()
    path = P.pretrain(net, images(), SETTINGS, out_dir=tmp_path, rt=runtime("cpu"),
                      meta={"genotype": "DARTS_V2", "init_channels": 8}, log=lambda *a, **k: None)
    saved = torch.load(path, weights_only=True)
    assert not any(k.startswith(("classifier.", "aux_head.")) for k in saved["model"])
    assert not torch.equal(saved["model"]["stem0.0.weight"], net.stem0[0].weight)  # it learned; the input was copied

    fresh = darts()
    head, aux = fresh.classifier.weight.clone(), fresh.aux_head.classifier.weight.clone()
    assert P.load_pretrained(fresh, path) == {"genotype": "DARTS_V2", "init_channels": 8, "images": 10}
    state = fresh.state_dict()
    for k, v in saved["model"].items():
        assert torch.equal(state[k], v), k
    assert torch.equal(fresh.classifier.weight, head) and torch.equal(fresh.aux_head.classifier.weight, aux)

    with pytest.raises(ConfigError, match=r"does not fit this network: \d+ of \d+ tensors .*pre-trained for init_channels 8"):
        P.load_pretrained(darts(C=12), path)


def test_a_torchvision_arch_pretrains_and_its_file_is_also_a_backbone_file(tmp_path):
    settings = P.PretrainSettings(**{**SETTINGS.__dict__, "epochs": 1})
    model = WithAux(build_baseline("resnet18", 3))
    path = P.pretrain(model, images(8), settings, out_dir=tmp_path, rt=runtime("cpu"), log=lambda *a, **k: None)
    assert P.is_pretrained_file(path)
    backbone = torch.load(path, weights_only=True)["model"]
    via_torchvision = build_baseline("resnet18", 3, pretrained_weights=path)  # the ImageNet weights reader
    assert torch.equal(via_torchvision.layer4[1].conv2.weight, backbone["layer4.1.conv2.weight"])
    ours = WithAux(build_baseline("resnet18", 3))
    P.load_pretrained(ours, path)
    assert torch.equal(ours.net.conv1.weight, backbone["conv1.weight"])
    torch.save({"conv1.weight": backbone["conv1.weight"]}, tmp_path / "plain.pth")
    assert not P.is_pretrained_file(tmp_path / "plain.pth")


def test_the_step_memory_grows_with_the_batch():
    mem = P.pretrain_step_memory(darts(), P.PretrainSettings(**{**SETTINGS.__dict__, "batch_size": 64}), runtime("cpu"))
    assert mem.per_image > 0 and mem.bytes_at(64) > mem.bytes_at(8) > 0


def test_unlabeled_folder_leaves_out_held_out_images_and_npz_rows_decode(tmp_path):
    from PIL import Image

    folder = tmp_path / "unlabeled"
    (folder / "sub").mkdir(parents=True)
    for name in ("ISIC_1", "ISIC_2", "sub/ISIC_3", "ISIC_4"):
        Image.fromarray(images(1, 20)[0]).save(folder / f"{name}.jpg")
    other = tmp_path / "val_elsewhere.png"
    Image.fromarray(images(1, 20)[0]).save(other)
    held = held_out_keys([Record("ISIC_3", 0, tmp_path / "copies" / "ISIC_3.jpg"), Record("x", 1, other),
                          Record("ISIC_4", 2, None)])
    kept, excluded = folder_images(folder, held)
    assert [p.name for p in kept] == ["ISIC_1.jpg", "ISIC_2.jpg"]
    assert sorted(p.name for p in excluded) == ["ISIC_3.jpg", "ISIC_4.jpg"]

    arrays = {"train": images(3, 28)}
    decoded, skipped = decode_records([Record("train_2", 0, None, index=2), Record("train_0", 1, None, index=0)],
                                      arrays, 32, cache=False, progress=False)
    assert decoded.shape == (2, 32, 32, 3) and decoded.dtype == np.uint8 and skipped == []
    files, _ = decode_records([Record("ISIC_1", -1, kept[0])], None, 16, cache=False, progress=False)
    assert files.shape == (1, 16, 16, 3)
