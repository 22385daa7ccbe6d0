"""lambda_dpo_loss: values against independent formulas, masking, ragged lists, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from lwdpo_edge import lambda_dpo_loss
from lwdpo_edge.objective import normalize_scores


def _random_case(B=3, K=2, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    policy = torch.randn(B, N, generator=g) * 5 - 40
    reference = torch.randn(B, N, generator=g) * 5 - 40
    scores = torch.randn(B, K, N, generator=g)
    lam = torch.softmax(torch.randn(B, K, generator=g), dim=-1)
    return policy, reference, scores, lam


def _loop_loss(policy, reference, scores, lam, beta, tau, mask):
    """The same objective written as plain Python loops over prompts, objectives and candidates."""
    total, count = 0.0, 0
    for b in range(policy.shape[0]):
        terms, weights = [], []
        for k in range(scores.shape[1]):
            idx = [i for i in range(policy.shape[1]) if mask[b, i] and math.isfinite(scores[b, k, i])]
            if len(idx) < 2:
                continue
            r = [beta * float(policy[b, i] - reference[b, i]) for i in idx]
            s = [float(scores[b, k, i]) / tau for i in idx]
            log_z_r = math.log(sum(math.exp(x) for x in r))
            z_s = sum(math.exp(x) for x in s)
            ce = -sum(math.exp(s_i) / z_s * (r_i - log_z_r) for s_i, r_i in zip(s, r))
            terms.append(ce)
            weights.append(float(lam[b, k]))
        if terms and sum(weights) > 0:
            total += sum(w * t for w, t in zip(weights, terms)) / sum(weights)
            count += 1
    return total / count


def test_pairwise_hard_target_is_dpo_sigmoid_loss():
    # N = 2, one objective, hard top-1 target: exactly -log sigmoid(r_w - r_l).
    policy, reference, _, _ = _random_case(B=6, K=1, N=2)
    scores = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]] * 3)  # winner alternates between the columns
    lam = torch.ones(6, 1)
    beta = 0.1
    loss, _ = lambda_dpo_loss(policy, reference, scores, lam, beta=beta, tau=0.0)

    rewards = beta * (policy - reference)
    winner = scores[:, 0, :].argmax(-1)
    r_w = rewards.gather(1, winner[:, None]).squeeze(1)
    r_l = rewards.gather(1, (1 - winner)[:, None]).squeeze(1)
    expected = -F.logsigmoid(r_w - r_l).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)


def test_matches_plain_loop_formula():
    policy, reference, scores, lam = _random_case(B=4, K=3, N=5, seed=1)
    mask = torch.ones(4, 5, dtype=torch.bool)
    loss, _ = lambda_dpo_loss(policy, reference, scores, lam, beta=0.2, tau=0.5, mask=mask)
    assert loss.item() == pytest.approx(_loop_loss(policy, reference, scores, lam, 0.2, 0.5, mask), rel=1e-5)


def test_ragged_lists_equal_unpadded_lists():
    # A list of 3 padded to 5 gives the same loss as the list of 3 on its own.
    policy, reference, scores, lam = _random_case(B=1, K=2, N=5, seed=2)
    mask = torch.tensor([[True, True, True, False, False]])
    padded, _ = lambda_dpo_loss(policy, reference, scores, lam, mask=mask)
    alone, _ = lambda_dpo_loss(policy[:, :3], reference[:, :3], scores[:, :, :3], lam)
    torch.testing.assert_close(padded, alone)
    # Garbage in the padding must not leak in.
    policy2 = policy.clone()
    policy2[:, 3:] = 1e4
    scores2 = scores.clone()
    scores2[:, :, 3:] = float("nan")
    padded2, _ = lambda_dpo_loss(policy2, reference, scores2, lam, mask=mask)
    torch.testing.assert_close(padded2, alone)


def test_missing_objective_renormalises_lambda():
    # Objective 1 has no scores for prompt 0: its loss is objective 0's CE alone, whatever lambda says.
    policy, reference, scores, _ = _random_case(B=1, K=2, N=4, seed=3)
    scores[0, 1, :] = float("nan")
    lam = torch.tensor([[0.3, 0.7]])
    loss, metrics = lambda_dpo_loss(policy, reference, scores, lam)
    only_first, _ = lambda_dpo_loss(policy, reference, scores[:, :1], torch.ones(1, 1))
    torch.testing.assert_close(loss, only_first)
    assert metrics["active"].tolist() == [[True, False]]


def test_partly_missing_scores_drop_only_those_candidates():
    policy, reference, scores, lam = _random_case(B=1, K=1, N=4, seed=4)
    scores[0, 0, 2] = float("nan")
    loss, _ = lambda_dpo_loss(policy, reference, scores, lam)
    keep = [0, 1, 3]
    expected, _ = lambda_dpo_loss(policy[:, keep], reference[:, keep], scores[:, :, keep], lam)
    torch.testing.assert_close(loss, expected)


def test_prompt_without_any_scores_is_left_out_of_the_mean():
    policy, reference, scores, lam = _random_case(B=2, K=2, N=3, seed=5)
    scores[1] = float("nan")
    both, _ = lambda_dpo_loss(policy, reference, scores, lam)
    first, _ = lambda_dpo_loss(policy[:1], reference[:1], scores[:1], lam[:1])
    torch.testing.assert_close(both, first)


def test_lambda_weights_mix_objective_losses_linearly():
    policy, reference, scores, _ = _random_case(B=1, K=2, N=4, seed=6)
    l0, _ = lambda_dpo_loss(policy, reference, scores, torch.tensor([[1.0, 0.0]]))
    l1, _ = lambda_dpo_loss(policy, reference, scores, torch.tensor([[0.0, 1.0]]))
    mixed, _ = lambda_dpo_loss(policy, reference, scores, torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(mixed, 0.25 * l0 + 0.75 * l1)


def test_gradient_matches_closed_form():
    # d L / d policy_logp_i = beta * (q_i - p*_i) for one prompt and one objective.
    policy, reference, scores, _ = _random_case(B=1, K=1, N=4, seed=7)
    policy.requires_grad_(True)
    beta, tau = 0.3, 0.7
    loss, _ = lambda_dpo_loss(policy, reference, scores, torch.ones(1, 1), beta=beta, tau=tau)
    loss.backward()
    q = torch.softmax(beta * (policy.detach() - reference), dim=-1)
    p = torch.softmax(scores[:, 0] / tau, dim=-1)
    torch.testing.assert_close(policy.grad, beta * (q - p))
    assert reference.grad is None


def test_ties_split_hard_target_evenly():
    policy = torch.zeros(1, 3)
    reference = torch.zeros(1, 3)
    scores = torch.tensor([[[2.0, 2.0, 0.0]]])
    loss, _ = lambda_dpo_loss(policy, reference, scores, torch.ones(1, 1), tau=0.0)
    # q is uniform (1/3 each); target is (1/2, 1/2, 0): CE = log 3.
    assert loss.item() == pytest.approx(math.log(3), rel=1e-6)


def test_top1_metric_counts_the_policy_favourite():
    reference = torch.zeros(2, 3)
    policy = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    scores = torch.tensor([[[5.0, 1.0, 0.0]], [[5.0, 1.0, 0.0]]])
    _, metrics = lambda_dpo_loss(policy, reference, scores, torch.ones(2, 1))
    assert metrics["top1_correct"].tolist() == [[True], [False]]


def test_loss_decreases_when_policy_moves_towards_target():
    _, reference, scores, lam = _random_case(B=2, K=2, N=4, seed=8)
    logits = torch.zeros(2, 4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=5.0)
    losses = []
    for _ in range(50):
        loss, _ = lambda_dpo_loss(reference + logits, reference, scores, lam, beta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_score_normalizations():
    scores = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [5.0, 5.0, 5.0, 5.0]])
    z = normalize_scores(scores, "zscore")
    torch.testing.assert_close(z[0, :3], torch.tensor([-1.2247, 0.0, 1.2247]), atol=1e-4, rtol=0)
    assert torch.isnan(z[0, 3]) and z[1].eq(0).all()  # a constant list gives a uniform target
    r = normalize_scores(torch.tensor([[3.0, 1.0, 3.0]]), "rank")
    assert r.tolist() == [[0.75, 0.0, 0.75]]
