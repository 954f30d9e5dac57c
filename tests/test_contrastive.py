"""The memory-bank NCE loss equals a plain per-sample reference; the bank follows its EMA rule."""
import math

import pytest
import torch
import torch.nn.functional as F

from common.contrastive.loss import BankNCE, MemoryBank, nce_loss


def _unit_bank(n, d, seed=0):
    v = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (v / v.norm(dim=1, keepdim=True)).float()


def _reference_nce(bank, idx, feats, negatives, tau):
    """One sample at a time with torch.dot and math: -log softmax of the positive logit."""
    total = 0.0
    for i in range(len(idx)):
        f = feats[i].double()
        f = f / math.sqrt(torch.dot(f, f).item())
        pos = torch.dot(bank[idx[i]].double(), f).item() / tau
        neg = [torch.dot(f, bank[j].double()).item() / tau for j in negatives[i]]
        logits = [pos] + neg
        top = max(logits)
        log_z = top + math.log(sum(math.exp(z - top) for z in logits))
        total += log_z - pos
    return total / len(idx)


def _record_negatives(crit):
    """Keep every negative index tensor the criterion's bank hands out."""
    drawn, sample = [], crit.bank.sample_negatives

    def recording(*args, **kwargs):
        drawn.append(sample(*args, **kwargs).clone())
        return drawn[-1]

    crit.bank.sample_negatives = recording
    return drawn


def test_nce_loss_matches_per_sample_reference():
    n, d, b, k, tau = 30, 16, 6, 10, 0.07
    bank = _unit_bank(n, d)
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(n, generator=g)[:b]
    feats = 3 * torch.randn(b, d, generator=g)  # not unit length: the loss normalises them
    negatives = MemoryBank(n, d).sample_negatives(idx, k, g)
    got = nce_loss(bank, idx, feats, negatives, tau).item()
    assert got == pytest.approx(_reference_nce(bank, idx, feats, negatives, tau), rel=1e-5)
    # tau matters the way the formula says
    assert nce_loss(bank, idx, feats, negatives, 1.0).item() == pytest.approx(
        _reference_nce(bank, idx, feats, negatives, 1.0), rel=1e-5)


def test_sample_negatives_never_draws_the_image_itself_and_covers_the_rest():
    n, k = 7, 50
    bank = MemoryBank(n, 4)
    idx = torch.tensor([0, 3, 6, 3])
    g = torch.Generator().manual_seed(0)
    seen = {i: set() for i in idx.tolist()}
    for _ in range(40):
        neg = bank.sample_negatives(idx, k, g)
        assert neg.shape == (4, k) and neg.dtype == torch.long
        assert (neg != idx[:, None]).all()
        assert ((neg >= 0) & (neg < n)).all()
        for i, row in zip(idx.tolist(), neg.tolist()):
            seen[i] |= set(row)
    for i, drawn in seen.items():
        assert drawn == set(range(n)) - {i}


def test_memory_bank_needs_two_images():
    with pytest.raises(ValueError):
        MemoryBank(1, 8)


def test_memory_bank_fill_and_update_rule():
    bank = MemoryBank(4, 2, momentum=0.5)
    bank.fill(torch.tensor([0, 1, 2, 3]), torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(bank.vectors[0], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(bank.vectors[1], torch.tensor([0.0, 1.0]))

    bank.update(torch.tensor([1, 2]), torch.tensor([[5.0, 0.0], [0.0, -0.5]]))
    # row 1: 0.5 * (0, 1) + 0.5 * (1, 0) = (0.5, 0.5) -> (1, 1) / sqrt 2
    torch.testing.assert_close(bank.vectors[1], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    # row 2: 0.5 * (1, 0) + 0.5 * (0, -1) -> (1, -1) / sqrt 2
    torch.testing.assert_close(bank.vectors[2], torch.tensor([1.0, -1.0]) / math.sqrt(2))
    torch.testing.assert_close(bank.vectors[0], torch.tensor([0.6, 0.8]))  # untouched rows stay
    torch.testing.assert_close(bank.vectors[3], torch.tensor([1.0, 1.0]) / math.sqrt(2))

    other = MemoryBank(2, 2, momentum=0.75)
    other.fill(torch.tensor([0]), torch.tensor([[1.0, 0.0]]))
    other.update(torch.tensor([0]), torch.tensor([[0.0, 2.0]]))  # 0.75 * (1, 0) + 0.25 * (0, 1)
    torch.testing.assert_close(other.vectors[0], torch.tensor([0.75, 0.25]) / math.hypot(0.75, 0.25))


def test_bank_nce_combines_both_terms_with_shared_negatives_then_updates_with_whole_features():
    n, d, b = 20, 8, 5
    crit = BankNCE(n, dim=d, tau=0.1, momentum=0.5, patch_weight=0.5)
    crit.bank.vectors.copy_(_unit_bank(n, d, seed=3))
    before = crit.bank.vectors.clone()
    g = torch.Generator().manual_seed(4)
    idx = torch.tensor([2, 5, 7, 11, 19])
    whole = torch.randn(b, d, generator=g, requires_grad=True)
    patch = torch.randn(b, d, generator=g, requires_grad=True)

    drawn = _record_negatives(crit)
    loss = crit(idx, whole, patch, torch.Generator().manual_seed(9))
    assert len(drawn) == 1  # one draw, shared by the patch and the whole-image term
    negatives = drawn[0]
    assert negatives.shape == (b, 2 * (b - 1))  # default K = 2 (B - 1), as in the paper
    want = 0.5 * _reference_nce(before, idx, patch.detach(), negatives, 0.1) + 0.5 * _reference_nce(
        before, idx, whole.detach(), negatives, 0.1)
    assert loss.item() == pytest.approx(want, rel=1e-5)  # computed against the bank before its update

    expected = before.clone()
    expected[idx] = F.normalize(0.5 * before[idx] + 0.5 * F.normalize(whole.detach(), dim=1), dim=1)
    torch.testing.assert_close(crit.bank.vectors, expected)  # whole-image features only, batch rows only

    loss.backward()
    assert whole.grad is not None and patch.grad is not None
    assert whole.grad.abs().sum() > 0 and patch.grad.abs().sum() > 0
    assert not crit.bank.vectors.requires_grad and crit.bank.vectors.grad is None
    assert [name for name, _ in crit.named_buffers()] == ["bank.vectors"] and not list(crit.parameters())


def test_bank_nce_patch_weight_and_negative_count():
    n, d, b = 12, 4, 3
    crit = BankNCE(n, dim=d, tau=0.2, patch_weight=1.0, negatives_per_image=5)
    crit.bank.vectors.copy_(_unit_bank(n, d, seed=5))
    before = crit.bank.vectors.clone()
    idx = torch.tensor([0, 4, 8])
    whole, patch = torch.randn(b, d), torch.randn(b, d)
    drawn = _record_negatives(crit)
    loss = crit(idx, whole, patch, torch.Generator().manual_seed(2))
    assert drawn[0].shape == (b, 5)
    assert loss.item() == pytest.approx(_reference_nce(before, idx, patch, drawn[0], 0.2), rel=1e-5)
