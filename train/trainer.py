"""LambdaDPOTrainer: the HF Trainer with a listwise lambda-DPO loss.

Only `compute_loss` (and logging) changes, so accelerate, DDP, FSDP and DeepSpeed apply as they do
for any Trainer. Each micro-batch:
  1. draws lambdas (a pure function of seed, step, micro-step and rank: resumes reproduce them),
  2. tokenises prompt-with-header + every candidate: each distinct (prompt, candidate) sequence
     once, all N of a list in one packed row after one copy of its prompt (`shared_prompt`),
  3. reference log-probs with the LoRA adapter disabled (no second model copy), no grad, only for
     sequences the reference cache does not hold yet (`cache_reference_logps`),
  4. policy log-probs (LM head on candidate positions only, in chunks: `chunked_logps`), the loss
     from `lwdpo_edge.objective.lambda_dpo_loss`.
During the first `sft_warmup_steps` steps only the lambda-best candidate of each list goes through
the model, and the loss is its per-token NLL (conditioned SFT warm start; steps 3-4 are skipped).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lwdpo_edge.batching import (
    ListwiseBatch,
    PackedListwiseBatch,
    SequenceRows,
    encode_listwise,
    cached_candidate_logps,
    encode_listwise_packed,
    fill_sequence_cache,
    on_candidate_grid,
)
from lwdpo_edge.logprobs import scored_sequence_logps, sequence_logps
from lwdpo_edge.objective import lambda_best_index, lambda_dpo_loss
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.lambda_sampling import LambdaSampler, PerformanceScheduler, step_rng
from lwdpo_edge.train.reference_cache import ReferenceCache

SCHEDULER_STATE_FILE = "lambda_scheduler.json"


def collate_records(records):
    """Keep records as Python objects: tokenisation needs the lambda, which is drawn per step."""
    return {"records": list(records)}


class LambdaDPOTrainer(Trainer):
    def __init__(self, *args, objectives: list[str], lambda_sampler: LambdaSampler, scheduler_lists=(),
                 reference_cache: ReferenceCache | None = None, **kwargs):
        kwargs.setdefault("data_collator", collate_records)
        super().__init__(*args, **kwargs)
        self.objectives = list(objectives)
        # sequence key -> reference log-prob; in memory only unless the recipe passes a file-backed one
        if reference_cache is None and self.args.cache_reference_logps:
            reference_cache = ReferenceCache(identity={})
        self.reference_cache = reference_cache if self.args.cache_reference_logps else None
        self.lambda_sampler = lambda_sampler
        self.scheduler_lists = list(scheduler_lists)  # held-out lists the performance scheduler measures
        self._scheduler_reference = {}  # anchor name -> (B, N) reference log-probs (never change)
        self._micro_step = (-1, 0)  # (global_step, index of the micro-batch within it)
        self._window = defaultdict(list)  # metrics since the last log
        if isinstance(lambda_sampler, PerformanceScheduler):
            if not self.scheduler_lists:
                raise ValueError("the performance scheduler needs held-out lists to measure")
            self.add_callback(_SchedulerUpdate(self))

    # ------------------------------------------------------------------ batch construction
    def _next_rng(self):
        step, micro = self._micro_step
        micro = micro + 1 if step == self.state.global_step else 0
        self._micro_step = (self.state.global_step, micro)
        return step_rng(self.args.seed, self.state.global_step, micro, self.args.process_index)

    def build_batch(self, records, packed: bool = True) -> PackedListwiseBatch | ListwiseBatch:
        """Each record is repeated under `lambdas_per_prompt` lambdas (the contrast setting)."""
        args: LambdaDPOConfig = self.args
        rng = self._next_rng()
        expanded, lambdas = [], []
        for record in records:
            for lam in self.lambda_sampler.draw(args.lambdas_per_prompt, rng):
                expanded.append(record)
                lambdas.append(lam)
        return self.encode(expanded, lambdas, packed)

    def encode(self, records, lambdas, packed: bool = True) -> PackedListwiseBatch | ListwiseBatch:
        """records[b] under lambdas[b], tokenised with this run's settings, on the training device.

        packed: each distinct sequence once (the listwise loss); else one padded row per candidate
        (the SFT warm-up, which forwards only some rows of it).
        """
        args: LambdaDPOConfig = self.args
        settings = dict(condition_on_lambda=args.condition_on_lambda, score_normalization=args.score_normalization,
                        max_prompt_tokens=args.max_prompt_tokens, max_response_tokens=args.max_response_tokens)
        if packed:
            batch = encode_listwise_packed(records, lambdas, self.processing_class, self.objectives,
                                           shared_prompt=args.shared_prompt, **settings)
        else:
            batch = encode_listwise(records, lambdas, self.processing_class, self.objectives, **settings)
        return batch.to(self.accelerator.device)

    def sequence_sums(self, model, rows: SequenceRows) -> torch.Tensor:
        """Summed log-prob of each distinct sequence that `rows` holds.  -> (S,)"""
        return scored_sequence_logps(model, rows.model_inputs(), rows.scored, chunked=self.args.chunked_logps)

    def on_candidate_grid(self, sums: torch.Tensor, batch: PackedListwiseBatch) -> torch.Tensor:
        """(S,) per distinct sequence -> (B, N_max) per candidate (length-normalised if asked; padding 0)."""
        return on_candidate_grid(sums, batch, self.args.length_normalize)

    def candidate_logps(self, model, batch: PackedListwiseBatch) -> torch.Tensor:
        """Log-prob of every candidate, placed on the (B, N_max) grid (padding stays 0)."""
        return self.on_candidate_grid(self.sequence_sums(model, batch.rows), batch)

    @torch.no_grad()
    def reference_logps(self, peft_model, batch: PackedListwiseBatch) -> torch.Tensor:
        """Candidate log-probs with the adapter disabled, (B, N_max); only sequences not cached are computed."""
        cache = self.reference_cache
        if cache is None:
            with peft_model.disable_adapter():
                return self.candidate_logps(peft_model, batch)

        def reference_sums(rows: SequenceRows) -> torch.Tensor:
            with peft_model.disable_adapter():
                return self.sequence_sums(peft_model, rows)

        computed = fill_sequence_cache(cache, batch, reference_sums, self.accelerator.device)
        self._window["reference_computed"].append(computed)  # sequences per micro-batch
        self._window["reference_cached"].append(len(batch.sequence_keys) - computed)
        return cached_candidate_logps(cache, batch, self.args.length_normalize, self.accelerator.device)

    def conditioned_sft_nll(self, policy_logps: torch.Tensor, batch: PackedListwiseBatch) -> torch.Tensor:
        """Mean per-token NLL of each list's lambda-best candidate (Rewards-in-Context style SFT), over the
        lists that have one: a list with no usable objective under its lambda imitates nothing."""
        best = lambda_best_index(batch.scores, batch.lam, batch.candidate_mask)[:, None]  # (B, 1), -1 = none
        n_tokens = _on_grid(batch.candidate_lengths().float(), batch).clamp_min(1)  # (B, N_max)
        per_token = policy_logps if self.args.length_normalize else policy_logps / n_tokens
        chosen = per_token.gather(1, best.clamp_min(0)).squeeze(1)  # (B,)
        has_target = best.squeeze(1) >= 0
        return -chosen[has_target].mean() if has_target.any() else chosen.sum() * 0.0

    def sft_warmup_end(self) -> int:
        """The first step of the listwise loss: sft_warmup_steps, or that fraction of all steps when < 1."""
        warmup = self.args.sft_warmup_steps
        return int(warmup * self.state.max_steps) if 0 < warmup < 1 else int(warmup)

    def warmup_sft_nll(self, model, batch: ListwiseBatch) -> torch.Tensor:
        """Per-token NLL of each list's lambda-best candidate, forwarding only those rows. A batch in which
        no list has a target under its lambda forwards one row at weight 0 (the step must still have a graph)."""
        best = lambda_best_index(batch.scores, batch.lam, batch.candidate_mask)  # (B,), -1 = no target
        has_target = best >= 0
        n_max = batch.candidate_mask.shape[1]
        lists = torch.arange(len(best), device=best.device)
        wanted = (lists * n_max + best.clamp_min(0))[has_target if has_target.any() else lists == 0]
        rows = (batch.candidate_index[:, None] == wanted[None, :]).any(dim=1)  # (M,) the rows to imitate
        length = int(batch.attention_mask[rows].sum(dim=1).max())  # right-padded: trim to the longest kept row
        logps = sequence_logps(model, batch.input_ids[rows, :length], batch.attention_mask[rows, :length],
                               batch.completion_mask[rows, :length], length_normalize=True,
                               chunked=self.args.chunked_logps)  # (rows,)
        return -logps.mean() if has_target.any() else logps.sum() * 0.0

    # ------------------------------------------------------------------ the loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        warmup = self.state.global_step < self.sft_warmup_end()
        batch = self.build_batch(inputs["records"], packed=not warmup)
        if warmup:
            sft_nll = self.warmup_sft_nll(model, batch)
            self._window["sft_nll"].append(sft_nll.item())
            return (sft_nll, {}) if return_outputs else sft_nll
        peft_model = self.accelerator.unwrap_model(model)
        reference_logps = self.reference_logps(peft_model, batch)  # the reference = base without adapter
        policy_logps = self.candidate_logps(model, batch)
        loss, metrics = lambda_dpo_loss(
            policy_logps, reference_logps, batch.scores, batch.lam,
            beta=self.args.beta, tau=self.args.tau, mask=batch.candidate_mask,
        )
        if self.args.sft_weight > 0:
            sft_nll = self.conditioned_sft_nll(policy_logps, batch)
            loss = loss + self.args.sft_weight * sft_nll
            self._window["sft_nll"].append(sft_nll.item())
        self._record(metrics, batch)
        return (loss, metrics) if return_outputs else loss

    def _record(self, metrics, batch: PackedListwiseBatch):
        """Per-objective top-1 accuracy under the sampled lambda, and reward statistics."""
        active = metrics["active"].float()  # (B, K)
        for k, name in enumerate(self.objectives):
            if active[:, k].sum() > 0:
                self._window[f"acc/{name}"].append(
                    (metrics["top1_correct"][:, k].float().sum() / active[:, k].sum()).item())
        rewards = metrics["rewards"][batch.candidate_mask]
        self._window["rewards/mean"].append(rewards.mean().item())
        self._window["rewards/spread"].append(
            (metrics["rewards"].masked_fill(~batch.candidate_mask, -1e9).amax(-1)
             - metrics["rewards"].masked_fill(~batch.candidate_mask, 1e9).amin(-1)).mean().item())

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:  # training logs only: average the window and reset it
            logs.update({name: sum(v) / len(v) for name, v in self._window.items() if v})
            self._window.clear()
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ performance scheduler
    def anchor_losses(self) -> list[float]:
        """Held-out listwise loss of the current policy at each scheduler anchor (its update input)."""
        return [self.anchor_losses_at(name, lam) for name, lam in self.lambda_sampler.anchors]

    @torch.no_grad()
    def anchor_losses_at(self, name: str, lam: dict[str, float]) -> float:
        """Held-out listwise loss at one anchor (the reference log-probs are computed once per anchor)."""
        model = self.accelerator.unwrap_model(self.model)
        batch = self.encode(self.scheduler_lists, [lam] * len(self.scheduler_lists))
        if name not in self._scheduler_reference:
            self._scheduler_reference[name] = self.reference_logps(model, batch)
        loss, _ = lambda_dpo_loss(self.candidate_logps(model, batch), self._scheduler_reference[name],
                                  batch.scores, batch.lam, beta=self.args.beta, tau=self.args.tau,
                                  mask=batch.candidate_mask)
        return loss.item()

    def update_lambda_scheduler(self) -> None:
        losses = self.anchor_losses()
        self.lambda_sampler.update(losses)
        for (name, _), loss, p in zip(self.lambda_sampler.anchors, losses, self.lambda_sampler.probabilities()):
            self._window[f"scheduler/loss/{name}"].append(loss)
            self._window[f"scheduler/p/{name}"].append(float(p))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.is_world_process_zero() and os.path.isdir(folder):
            self.save_checkpoint_state(folder)
        self.save_reference_cache()

    def save_checkpoint_state(self, folder: str) -> None:
        """What a checkpoint holds beside HF's files (rank 0): the lambda sampler's state."""
        with open(os.path.join(folder, SCHEDULER_STATE_FILE), "w") as f:
            json.dump(self.lambda_sampler.state_dict(), f)

    def save_reference_cache(self) -> None:
        """Write the reference cache file (rank 0; no-op without a file-backed cache)."""
        if self.reference_cache is not None and self.is_world_process_zero():
            self.reference_cache.save()

    def floating_point_ops(self, inputs):
        return 0  # records are tokenised inside compute_loss; HF's token estimate would only warn


def _on_grid(flat: torch.Tensor, batch: ListwiseBatch | PackedListwiseBatch) -> torch.Tensor:
    """Per-row values (M,) -> the (B, N_max) candidate grid (padding 0); differentiable."""
    grid = flat.new_zeros(batch.candidate_mask.numel()).index_put((batch.candidate_index,), flat)
    return grid.view(batch.candidate_mask.shape)


def load_scheduler_state(sampler: LambdaSampler, checkpoint: str | os.PathLike) -> None:
    """Restore the sampler's state saved in a checkpoint folder (no file: stateless sampler)."""
    path = os.path.join(checkpoint, SCHEDULER_STATE_FILE)
    if os.path.exists(path):
        with open(path) as f:
            sampler.load_state_dict(json.load(f))


class _SchedulerUpdate(TrainerCallback):
    """Every `every` optimizer steps, feed the performance scheduler fresh held-out losses.

    Runs on every rank (same lists, same model after DDP sync), so ranks keep identical states.
    """

    def __init__(self, trainer: LambdaDPOTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.trainer.lambda_sampler.every == 0:
            self.trainer.update_lambda_scheduler()
