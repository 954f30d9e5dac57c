"""Noise-contrastive estimation against a memory bank (PIRL-style), vectorised over the batch."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def nce_loss(bank, idx, feats, negatives, tau):
    """Mean NCE loss of a batch.

    bank (N, D) unit rows; idx (B,) bank rows of the batch's images; feats (B, D) view features;
    negatives (B, K) bank rows of other images. Image i: positive logit cos(bank_i, f_i) / tau, negative logits
    cos(f_i, bank_j) / tau; cross-entropy with the positive as the target.
    """
    return nce_losses(bank, idx, feats[:, None], negatives, tau)[0]


def nce_losses(bank, idx, feats, negatives, tau):
    """nce_loss for V views of each image at once: feats (B, V, D) -> (V,) mean loss per view.

    The views share the negatives, so the (B, K, D) gather of bank rows (the costly part) is made once.
    """
    b, v = feats.shape[:2]
    f = F.normalize(feats.float(), dim=2)  # (B, V, D)
    pos = torch.bmm(f, bank.index_select(0, idx).unsqueeze(2))  # (B, V, 1)
    # index_select gathers rows about 2x faster than bank[negatives] on CPU
    rows = bank.index_select(0, negatives.flatten()).view(*negatives.shape, -1)  # (B, K, D)
    neg = torch.bmm(f, rows.transpose(1, 2))  # (B, V, K)
    logits = torch.cat([pos, neg], dim=2) / tau  # (B, V, 1 + K)
    target = torch.zeros(b * v, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.flatten(0, 1), target, reduction="none").view(b, v).mean(0)  # (V,)


class MemoryBank(nn.Module):
    """One unit-length representation per image, updated as an exponential moving average of whole-image features."""

    def __init__(self, n_images, dim, momentum=0.5):
        super().__init__()
        if n_images < 2:
            raise ValueError("a memory bank needs at least 2 images to draw negatives from")
        self.momentum = momentum
        self.register_buffer("vectors", torch.zeros(n_images, dim))  # (N, D)

    @torch.no_grad()
    def fill(self, idx, feats):
        self.vectors[idx] = F.normalize(feats.float(), dim=1)

    @torch.no_grad()
    def update(self, idx, feats):
        """bank_i <- normalise(m * bank_i + (1 - m) * normalise(f_i)) for the batch's images."""
        mixed = self.momentum * self.vectors[idx] + (1 - self.momentum) * F.normalize(feats.float(), dim=1)
        self.vectors[idx] = F.normalize(mixed, dim=1)

    def sample_negatives(self, idx, k, generator=None):
        """(B, k) random bank rows, each different from its own image's row (uniform over the other N-1)."""
        n = self.vectors.shape[0]
        draw = torch.randint(0, n - 1, (len(idx), k), generator=generator, device=idx.device)
        return draw + (draw >= idx[:, None]).long()  # skip over the image itself


class BankNCE(nn.Module):
    """The CSNAS objective: patch_weight * NCE(bank, patch) + (1 - patch_weight) * NCE(bank, whole)."""

    def __init__(self, n_images, dim=256, tau=0.07, momentum=0.5, patch_weight=0.5, negatives_per_image=None):
        super().__init__()
        self.bank = MemoryBank(n_images, dim, momentum)
        self.tau = tau
        self.patch_weight = patch_weight
        self.negatives_per_image = negatives_per_image  # None: 2 * (batch - 1), as in the paper

    def forward(self, idx, whole, patch, generator=None):
        """idx (B,), whole (B, D), patch (B, D) -> scalar loss; then updates the bank with the whole-image features."""
        k = self.negatives_per_image or 2 * (len(idx) - 1)
        negatives = self.bank.sample_negatives(idx, k, generator)  # (B, K), shared by both terms
        per_view = nce_losses(self.bank.vectors, idx, torch.stack([patch, whole], dim=1), negatives, self.tau)
        loss = self.patch_weight * per_view[0] + (1 - self.patch_weight) * per_view[1]
        self.bank.update(idx, whole.detach())
        return loss
