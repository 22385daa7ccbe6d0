"""The multi-preference lambda-weighted listwise DPO objective (docs/design.md, section 3).

For each prompt b with candidates i = 1..N and objectives k = 1..K:

    r_i      = beta * (log pi_theta(y_i | x, lambda) - log pi_ref(y_i | x, lambda))   implicit reward
    q        = softmax_i(r_i)                                                         policy's list distribution
    p*_k     = softmax_i(s_{k,i} / tau)             (tau = 0: uniform over the argmax set, a hard top-1 target)
    L_b      = sum_k lambda_k * CE(p*_k, q)
    loss     = mean over prompts with at least one active objective

Objective k is *usable* for prompt b when at least two valid candidates carry a finite score and
those scores are not all equal (`usable_objectives`); scores are NaN where missing. Real data is
scored on some objectives per list and null on others, so every use of a list (this loss, the SFT
target, evaluation) goes through that one rule. Candidates without a score for k are left out of
that objective's list on both sides (target and policy softmax), so a missing score never reads as
"worst". lambda is renormalised over the usable objectives. With N = 2, K = 1 and tau = 0 this is exactly
the DPO sigmoid loss -log sigmoid(r_w - r_l) (tests check it numerically).

Pure function: tensors in, tensors out, no I/O.
"""

from __future__ import annotations

import torch


def listwise_targets(scores: torch.Tensor, valid: torch.Tensor, tau: float) -> torch.Tensor:
    """p*_k over each list: softmax(s / tau) on valid entries, zero elsewhere.  (B, K, N) -> (B, K, N)."""
    if tau > 0:
        logits = (scores / tau).masked_fill(~valid, float("-inf"))
    else:
        # Hard target: equal mass on every candidate that ties for the best score.
        best = scores.masked_fill(~valid, float("-inf")).amax(dim=-1, keepdim=True)  # (B, K, 1)
        logits = torch.zeros_like(scores).masked_fill(~(valid & (scores == best)), float("-inf"))
    target = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(target, nan=0.0)  # rows with no valid entry become all-zero, not NaN


def normalize_scores(scores: torch.Tensor, method: str) -> torch.Tensor:
    """Put each list's scores for each objective on a common scale.  (K, N) -> (K, N), NaN kept.

    zscore: (s - mean) / std over the list (a constant list becomes all zeros = uniform target);
    rank: 0..1 by rank (ties share the mean rank); none: raw scores.
    """
    if method == "none":
        return scores
    out = torch.full_like(scores, float("nan"))
    for k in range(scores.shape[0]):
        present = torch.isfinite(scores[k])
        values = scores[k][present]
        if values.numel() == 0:
            continue
        if method == "zscore":
            std = values.std(unbiased=False)
            out[k][present] = (values - values.mean()) / std if std > 1e-8 else torch.zeros_like(values)
        elif method == "rank":
            ranks = ((values[:, None] > values[None, :]).float().sum(1)
                     + 0.5 * ((values[:, None] == values[None, :]).float().sum(1) - 1))
            out[k][present] = ranks / max(values.numel() - 1, 1)
        else:
            raise ValueError(f"unknown score normalization {method!r}")
    return out


def usable_objectives(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Which objectives can teach anything on each list: >= 2 real candidates with a finite score, and
    not all of those scores equal (a list of ties, or one scored answer, has no preference to learn).

    scores (B, K, N), NaN where missing; mask (B, N) True for real candidates.  -> (B, K) bool
    """
    valid = mask[:, None, :] & torch.isfinite(scores)  # (B, K, N)
    high = scores.masked_fill(~valid, float("-inf")).amax(dim=-1)  # (B, K)
    low = scores.masked_fill(~valid, float("inf")).amin(dim=-1)
    return (valid.sum(dim=-1) >= 2) & (high > low)


def lambda_weighted_scores(scores: torch.Tensor, lam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_k lambda_k * s_{k,i} over the usable objectives, lambda renormalised over them.

    A candidate missing the score of an objective that carries weight gets NaN (it cannot be judged
    under this lambda), and a list with no usable weighted objective is all NaN.
    scores (B, K, N) normalised, NaN where missing; lam (B, K); mask (B, N).  -> (B, N)
    """
    weights = lam * usable_objectives(scores, mask)  # (B, K)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    weighted = (weights[:, :, None] * torch.nan_to_num(scores, nan=0.0)).sum(dim=1)  # (B, N)
    unjudged = ((weights[:, :, None] > 0) & ~torch.isfinite(scores)).any(dim=1)  # (B, N)
    no_weight = weights.sum(dim=-1, keepdim=True) == 0  # (B, 1)
    return weighted.masked_fill(unjudged | ~mask | no_weight, float("nan"))


def lambda_best_index(scores: torch.Tensor, lam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Index of each list's best candidate under its lambda (the conditioned-SFT target; the first of
    tied bests), or -1 where the list has none: no objective it can rank carries weight.

    scores (B, K, N) normalised, NaN where missing; lam (B, K); mask (B, N).  -> (B,) long
    """
    weighted = lambda_weighted_scores(scores, lam, mask)  # (B, N), NaN = not judged
    judged = torch.isfinite(weighted)
    best = weighted.masked_fill(~judged, float("-inf")).argmax(dim=-1)
    return best.masked_fill(~judged.any(dim=-1), -1)


def lambda_dpo_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    scores: torch.Tensor,
    lam: torch.Tensor,
    beta: float = 0.1,
    tau: float = 1.0,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Lambda-weighted listwise DPO loss.

    Args:
        policy_logps:    (B, N) summed log-probs of each candidate under the policy (with grad).
        reference_logps: (B, N) the same under the reference policy (no grad needed).
        scores:          (B, K, N) per-objective scores, higher is better, NaN where missing.
        lam:             (B, K) lambda per prompt, non-negative (renormalised over active objectives).
        beta:            DPO temperature on the log-ratio.
        tau:             target temperature; 0 gives a hard top-1 target.
        mask:            (B, N) bool, True for real candidates (ragged lists are padded); None = all real.

    Returns:
        loss: scalar, mean over prompts with at least one usable objective under lambda (0 if none).
        metrics: detached tensors -- "rewards" (B, N), "objective_ce" (B, K), "active" (B, K),
            "top1_correct" (B, K) (policy's best candidate is among objective k's best), "weights" (B, K).
    """
    B, K, N = scores.shape
    if mask is None:
        mask = torch.ones(B, N, dtype=torch.bool, device=scores.device)
    rewards = beta * (policy_logps - reference_logps)  # (B, N)

    valid = mask[:, None, :] & torch.isfinite(scores)  # (B, K, N) candidate i counts for objective k
    active = usable_objectives(scores, mask)  # (B, K)
    safe_scores = torch.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)
    target = listwise_targets(safe_scores, valid, tau)  # (B, K, N)

    # log q restricted to each objective's valid candidates.  (B, K, N)
    policy_logits = rewards[:, None, :].expand(B, K, N).masked_fill(~valid, float("-inf"))
    log_q = torch.log_softmax(policy_logits, dim=-1)
    objective_ce = -(target * log_q.masked_fill(~valid, 0.0)).sum(dim=-1)  # (B, K)

    weights = lam * active  # renormalise lambda over the active objectives
    has_any = weights.sum(dim=-1) > 0  # (B,)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_prompt = (weights * objective_ce.masked_fill(~active, 0.0)).sum(dim=-1)  # (B,)
    loss = per_prompt[has_any].mean() if has_any.any() else rewards.sum() * 0.0

    with torch.no_grad():  # ranking accuracy: the policy's favourite ties for objective k's best score
        policy_best = policy_logits.argmax(dim=-1, keepdim=True)  # (B, K, 1)
        best_score = safe_scores.masked_fill(~valid, float("-inf")).amax(dim=-1)  # (B, K)
        top1_correct = safe_scores.gather(-1, policy_best).squeeze(-1) == best_score
    metrics = {
        "rewards": rewards.detach(),
        "objective_ce": objective_ce.detach(),
        "active": active,
        "top1_correct": top1_correct & active,
        "weights": weights.detach(),
    }
    return loss, metrics

