"""Baselines: every torchvision architecture builds and runs, ImageNet weights load or are refused, plain keys."""
import pytest
import torch
import torchvision

from common.arch.baselines import BASELINES, WithAux, _read_state_dict, build_baseline, cam_layer, head_name, unwrap_aux
from common.arch.genotypes import DARTS_V2
from common.arch.networks import EvalNetwork
from common.config import ConfigError
from common.labeled.cam import GradCAM


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_builds_runs_and_explains(name):
    torch.manual_seed(0)
    model = WithAux(build_baseline(name, 5))
    logits, aux = model.train()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5) and aux is None and torch.isfinite(logits).all()
    logits.sum().backward()  # trains: gradients reach the first layer
    first = next(unwrap_aux(model).parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    cam, out = GradCAM(model, cam_layer(model))(torch.randn(1, 3, 32, 32))
    assert cam.shape == (32, 32) and out.shape == (5,) and 0 <= cam.min() and cam.max() <= 1


def test_cam_layer_per_family_and_for_darts():
    r = build_baseline("resnet18", 3)
    assert cam_layer(WithAux(r)) is r.layer4
    m = build_baseline("mobilenet_v3_large", 3)
    assert cam_layer(m) is m.features
    net = EvalNetwork(DARTS_V2, 3, C=8, layers=3, auxiliary=True)
    assert cam_layer(net) is net.cells[-1]
    with pytest.raises(ValueError, match="no Grad-CAM layer"):
        cam_layer(torch.nn.Linear(2, 2))


def test_params_equal_torchvision_and_unknown_name_refused():
    for name in ("resnet18", "efficientnet_b0"):
        ours = sum(p.numel() for p in build_baseline(name, 7).parameters())
        theirs = sum(p.numel() for p in torchvision.models.get_model(name, num_classes=7).parameters())
        assert ours == theirs
    with pytest.raises(ConfigError, match="unknown baseline.*resnet18"):
        build_baseline("vgg11", 3)


def test_with_aux_checkpoints_hold_bare_torchvision_keys():
    torch.manual_seed(0)
    model = WithAux(build_baseline("resnet18", 4))
    sd = model.state_dict()
    bare = torchvision.models.resnet18(num_classes=4)
    assert list(sd) == list(bare.state_dict())  # no 'net.' prefix
    assert sorted(sd._metadata) == sorted(bare.state_dict()._metadata)
    bare.load_state_dict(sd)  # a best.pt of a baseline loads into plain torchvision
    again = WithAux(build_baseline("resnet18", 4))
    again.load_state_dict(bare.state_dict())
    keys, meta = list(sd), dict(sd._metadata)
    again.load_state_dict(sd)
    assert list(sd) == keys and dict(sd._metadata) == meta  # the caller's dict is left as it was
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(again.eval()(x)[0], model.eval()(x)[0])
    nested = torch.nn.Sequential(WithAux(build_baseline("resnet18", 4)))  # a prefix above the wrapper too
    assert "0.fc.weight" in nested.state_dict()
    nested.load_state_dict(nested.state_dict())


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A stand-in for a downloaded torchvision file: mobilenet_v3_large, 1000 classes, random weights."""
    torch.manual_seed(1)
    sd = torchvision.models.mobilenet_v3_large(num_classes=1000).state_dict()
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # like torchvision's files
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_large-8738ca79.pth"
    torch.save(sd, path)
    return path, sd


def test_pretrained_backbone_loads_classifier_is_new(imagenet_file):
    path, sd = imagenet_file
    model = build_baseline("mobilenet_v3_large", 6, pretrained_weights=path)
    own = model.state_dict()
    assert head_name(model) == "classifier.3"
    assert torch.equal(own["features.0.0.weight"], sd["features.0.0.weight"])
    assert torch.equal(own["classifier.0.weight"], sd["classifier.0.weight"])  # the hidden layer is backbone
    assert own["classifier.3.weight"].shape == (6, 1280)
    fresh = build_baseline("mobilenet_v3_large", 1000, pretrained_weights=path)  # the head is re-made even if it fits
    assert not torch.equal(fresh.state_dict()["classifier.3.weight"], sd["classifier.3.weight"])


def test_weights_of_another_architecture_refused_in_one_line(imagenet_file):
    path, _ = imagenet_file
    with pytest.raises(ConfigError) as err:
        build_baseline("resnet18", 6, pretrained_weights=path)
    msg = str(err.value)
    assert "does not fit resnet18" in msg and "0 of" in msg and "looks like mobilenet_v3_large" in msg
    assert "\n" not in msg


def test_missing_and_unreadable_files_refused(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_baseline("resnet18", 3, pretrained_weights=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read") as err:
        build_baseline("resnet18", 3, pretrained_weights=bad)
    assert "\n" not in str(err.value)
    empty = tmp_path / "list.pth"
    torch.save([1, 2, 3], empty)
    with pytest.raises(ConfigError, match="no state dict"):
        build_baseline("resnet18", 3, pretrained_weights=empty)


def test_old_densenet_keys_and_wrapped_checkpoints_are_read(tmp_path):
    path = tmp_path / "densenet.pth"
    torch.save({"state_dict": {"module.features.denseblock1.denselayer1.norm.1.weight": torch.ones(2),
                               "module.features.denseblock1.denselayer1.conv.2.weight": torch.ones(2)}}, path)
    assert sorted(_read_state_dict(path)) == ["features.denseblock1.denselayer1.conv2.weight",
                                              "features.denseblock1.denselayer1.norm1.weight"]
