"""The network contrastive training trains: a backbone's pooled features and the two projection heads of CSNAS."""
import copy

import torch
import torch.nn as nn

from common.arch.baselines import head_name, unwrap_aux
from common.arch.networks import SearchNetwork


class ContrastiveNet(nn.Module):
    """A backbone (images (B, 3, S, S) -> pooled features (B, F)) with two heads: the whole image's features -> (B, D),
    the patch views' features concatenated -> (B, D).

    One class, built two ways: `search_candidate` (a genotype's SearchNetwork: what a search trial trains) and
    `from_classifier` (the network later trained with labels, its classifier replaced by an identity: pre-training).
    """

    def __init__(self, backbone, feature_dim, proj_dim=256, n_patch_views=2):
        super().__init__()
        self.backbone = backbone
        self.head_whole = nn.Linear(feature_dim, proj_dim)  # whole image -> representation
        self.head_patch = nn.Linear(n_patch_views * feature_dim, proj_dim)  # concatenated patch views

    @classmethod
    def search_candidate(cls, genotype, init_channels, layers, proj_dim=256):
        """SearchNetwork(genotype, C=init_channels, layers) with the heads: weights drawn from the global RNG in the
        order stem, cells, heads (what the search's seeded trials depend on)."""
        backbone = SearchNetwork(genotype, C=init_channels, layers=layers)
        return cls(backbone, backbone.feature_dim, proj_dim)

    @classmethod
    def from_classifier(cls, classifier, proj_dim=256):
        """A copy of `classifier` (left untouched; a WithAux is unwrapped) whose final Linear becomes an identity, so it
        returns its pooled features, and whose auxiliary head is dropped (it belongs to the labeled training). The
        backbone keeps the classifier's module names: its state_dict is the bare network's (pretrained.pt)."""
        net = copy.deepcopy(unwrap_aux(classifier))
        head = head_name(net)
        parent, _, leaf = head.rpartition(".")
        feature_dim = net.get_submodule(head).in_features
        setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())
        if getattr(net, "aux_head", None) is not None:
            net.aux_head = None
        return cls(net, feature_dim, proj_dim)

    def features(self, x):
        """(B, 3, S, S) -> (B, F), the backbone's pooled features (an EvalNetwork returns (features, None))."""
        out = self.backbone(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def represent(self, whole):
        """whole (B, 3, S, S) -> (B, D): the whole-image representation, exactly as forward computes it."""
        return self.head_whole(self.features(whole))

    def forward(self, whole, patches):
        """whole (B, 3, S, S), patches V views of (B, 3, S, S) (a list, or a (V, B, 3, S, S) tensor) ->
        (whole (B, D), patch (B, D)), one backbone pass per view.

        In training mode BatchNorm normalises with the statistics of the batch it is given. One pass per view gives
        every view its own statistics, as the original CSNAS did, and makes the whole-image output equal to
        represent(whole) alone (what the memory bank is filled with). One joint pass over all views would normalise
        each view with the mixture's statistics: at init (CNAS_ISIC_s5, C=16, 5 cells, 64 noise images) an image's
        whole-image feature from a joint pass then had cosine 0.78 to its feature alone, about what two different
        images have (0.73). On a 2-core CPU (same network, channels_last) three passes cost what one joint pass does,
        within noise; so did a BatchNorm computing statistics per view group in one pass.
        """
        f_whole = self.represent(whole)
        f_patch = torch.cat([self.features(p) for p in patches], dim=1)  # (B, V*F): view v at [vF, (v+1)F)
        return f_whole, self.head_patch(f_patch)
