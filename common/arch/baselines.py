"""Hand-designed torchvision classifiers as baselines: build by name, load user-downloaded ImageNet weights, Grad-CAM layer."""
import re
from pathlib import Path

import torch
import torch.nn as nn

from common.config import ConfigError

BASELINES = ("resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "densenet121")
LOOKS_LIKE = 0.9  # share of a file's tensors that must fit an architecture to name it in an error message
# torchvision's DenseNet files predate its module names: 'denselayer1.norm.1.weight' is 'denselayer1.norm1.weight' now
_OLD_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def _torchvision_model(name, num_classes):
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)  # weights=None: never downloads


def build_baseline(name, num_classes, pretrained_weights=None):
    """A torchvision classifier `name` (one of BASELINES) with a fresh num_classes-way classifier.

    pretrained_weights: path to a torchvision .pth file the user downloaded (e.g. resnet18-f37072fd.pth, ImageNet,
    1000 classes). Every tensor of the backbone is taken from it (all must fit by name and shape); the final
    Linear layer stays freshly initialised for num_classes. Nothing is ever downloaded. Bad files raise ConfigError.
    The model's forward returns logits only; wrap it in WithAux for the training loop.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline architecture {name!r}; choose one of {', '.join(BASELINES)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"a classifier needs num_classes >= 2, got {num_classes!r}")
    model = _torchvision_model(name, num_classes)
    if pretrained_weights is not None:
        load_backbone(model, name, pretrained_weights)
    return model


def head_name(model):
    """Name of the final Linear layer (the classifier that is re-made for the task): fc, classifier.3, ..."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear classifier")
    return names[-1]


def _read_state_dict(path):
    """{key: tensor} from a .pth file: a plain state dict, or one under 'state_dict' / 'model' (checkpoints)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"pretrained weights file {path} not found (download it first; nothing is fetched here)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: a .pth runs no code
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not a weights file we can read
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot read {path} as PyTorch weights: {first}") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    tensors = {k: v for k, v in data.items() if torch.is_tensor(v)} if isinstance(data, dict) else {}
    if not tensors:
        raise ConfigError(f"{path} holds no state dict of tensors (found {type(data).__name__}); expected torchvision weights")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return {_OLD_DENSENET_KEY.sub(r"\1\2.", k): v for k, v in tensors.items()}


def _fits(target, source):
    """Keys of `target` (name -> shape) that `source` holds with the same shape."""
    return [k for k, shape in target.items() if k in source and tuple(source[k].shape) == tuple(shape)]


def _looks_like(source):
    """The BASELINES architecture whose tensors the file holds almost all of, or None (models built on 'meta': free)."""
    best, best_share = None, 0.0
    weights = [k for k in source if not k.endswith("num_batches_tracked")]
    for name in BASELINES:
        with torch.device("meta"):
            model = _torchvision_model(name, 1000)
        shapes = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        share = len(_fits(shapes, source)) / max(len(weights), 1)
        if share > best_share:
            best, best_share = name, share
    return best if best_share >= LOOKS_LIKE else None


def load_backbone(model, name, path):
    """Copy every backbone tensor of the weights file at `path` into `model` (a `name` architecture).

    All backbone tensors must be in the file with the right shape, or nothing is loaded and ConfigError says
    how many fitted and which architecture the file looks like. The classifier keeps its fresh weights.
    """
    source = _read_state_dict(path)
    head = head_name(model) + "."
    own = model.state_dict()
    # BatchNorm's step counter is not a weight (torchvision's files lack it), and the classifier is re-made
    backbone = {k: v.shape for k, v in own.items() if not k.startswith(head) and not k.endswith("num_batches_tracked")}
    fit = _fits(backbone, source)
    if len(fit) < len(backbone):
        guess = _looks_like(source)
        hint = f"; it looks like {guess} weights" if guess and guess != name else ""
        missing = next(k for k in backbone if k not in fit)
        raise ConfigError(f"{Path(path).expanduser()} does not fit {name}: {len(fit)} of {len(backbone)} backbone "
                          f"tensors match by name and shape (first missing: {missing}){hint}")
    with torch.no_grad():
        for k in fit:
            own[k].copy_(source[k])  # state_dict tensors share storage with the model's parameters and buffers
    return len(fit)


class WithAux(nn.Module):
    """A logits-only classifier in the (logits, aux) form the training loop expects; aux is always None.

    The wrapped model is registered as `net`, but state_dict() drops that prefix and load_state_dict() adds it
    back: checkpoints hold the bare torchvision keys (fc.weight, layer4.1.conv2.weight, ...), so a best.pt
    loads into WithAux(build_baseline(...)) and into torchvision.models.<name>(num_classes=K) alike.
    """

    def __init__(self, model):
        super().__init__()
        self.net = model
        self.register_state_dict_post_hook(_drop_net_prefix)
        self.register_load_state_dict_pre_hook(_add_net_prefix)

    def forward(self, x):
        return self.net(x), None


def _dotted(module_name):
    """A metadata key (module name, '' for the root) as a key prefix: 'layer1' -> 'layer1.', '' -> ''."""
    return module_name + "." if module_name else ""


def _drop_net_prefix(module, state_dict, prefix, local_metadata):
    inner = prefix + "net."
    for k in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + k[len(inner):]] = state_dict.pop(k)  # in order: the dict reads like the bare model's
    meta = getattr(state_dict, "_metadata", {})  # per-module versions (BatchNorm reads its own on load)
    for m in [m for m in meta if _dotted(m).startswith(inner)]:
        meta[(prefix + _dotted(m)[len(inner):]).rstrip(".")] = meta.pop(m)


def _add_net_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    # state_dict is load_state_dict's own copy, so renaming keys leaves the caller's dict alone. Its _metadata is
    # the caller's object and stays untouched: inner modules then load without a version, which for BatchNorm
    # only means a missing num_batches_tracked is filled in (torchvision's files lack it anyway)
    inner = prefix + "net."
    for k in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + k[len(prefix):]] = state_dict.pop(k)


def unwrap_aux(model):
    """The model inside WithAux (or the model itself)."""
    return model.net if isinstance(model, WithAux) else model


def cam_layer(model):
    """The module whose (N, C, h, w) output Grad-CAM explains: the last feature map before global pooling.

    ResNet: layer4; MobileNetV3, EfficientNet, DenseNet: features (their whole convolutional trunk; DenseNet's
    forward applies a ReLU in place to it, so the map Grad-CAM sees is the rectified one); a DARTS EvalNetwork:
    its last cell. WithAux is looked through.
    """
    model = unwrap_aux(model)
    if hasattr(model, "last_cell"):
        return model.last_cell()
    for name in ("layer4", "features"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    raise ValueError(f"no Grad-CAM layer known for {type(model).__name__}; pass one of its modules to GradCAM directly")
