"""Verification: does the exported file behave like the trained model, lambda header included?

The reference is the run itself: the fp32 base with the adapter applied (not yet merged), i.e. what
`lwdpo-edge generate` runs, so a wrong merge shows up as well as a wrong conversion. For each probe
prompt at two lambdas (the default, and all weight on the first objective), or once without a header
for a model that reads none (`plain_probes`), the reference records the prompt text, its tokens, the
greedy continuation, and at every position (prompt + continuation) its argmax and top-2 margin
(lwdpo_edge/agreement.py). The export is then checked for:

    template  its own chat template, rendered with `lwdpo_lambda` (or without it, for the default),
              gives exactly the reference prompt text
    tokens    its own tokenizer gives exactly the reference tokens
    top-1     teacher-forced over prompt + reference continuation, the argmax of the export's
              next-token logits agrees with the reference's:
                f16 / fp32 / hf: at EVERY position where the reference's top-2 margin is at least
                  agreement.MIN_MARGIN (0.5 logits); a knife-edge position (a near tie that another
                  CPU's kernels may break the other way) is reported, never a failure
                quantised: on at least MIN_TOP1_QUANTIZED of all positions, a floor that catches a
                  broken file, not a quality bar
    greedy    the free-running greedy continuation: reported (identical share, tokens before the first
              divergence), never required, since one near tie changes everything after it
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from lwdpo_edge.agreement import MIN_MARGIN, Agreement, ReferenceChoices, compare
from lwdpo_edge.chat_template import render_chat_template
from lwdpo_edge.conditioning import conditioned_messages, prompt_text
from lwdpo_edge.export_contract import LAMBDA_TEMPLATE_VARIABLE, ExportContract
from lwdpo_edge.lambdas import format_lambda_header

PROBE_PROMPTS = (
    "What is the capital of France?",
    "Give me one tip for sleeping well.",
    "Explain what a prime number is.",
)
GREEDY_TOKENS = 16
MIN_TOP1_QUANTIZED = 0.5


@dataclass
class Expected:
    """What the reference model does on one probe."""

    prompt: str
    lam: dict[str, float] | None  # None: the default lambda, reached through the template's fallback
    header: str
    text: str = field(repr=False)
    tokens: list[int] = field(repr=False)
    greedy: list[int] = field(repr=False)
    max_new: int = field(repr=False)  # the greedy budget: a continuation shorter than this ended on a stop token
    choices: ReferenceChoices = field(repr=False)  # argmax and top-2 margin at every position of tokens + greedy

    @property
    def top1(self) -> np.ndarray:
        return self.choices.top1


def expected_probe(runtime, prompt: str, lam, header: str, text: str, stop: Collection[int],
                   max_new: int = GREEDY_TOKENS) -> Expected:
    """The reference runtime's greedy continuation of `text` and its choices along it."""
    tokens = runtime.tokenize(text)
    greedy = runtime.greedy(tokens, max_new, stop)
    choices = ReferenceChoices.from_logits(runtime.logits(tokens + greedy))
    return Expected(prompt, lam, header, text, tokens, greedy, max_new, choices)


def plain_probes(runtime, tokenizer, stop: Collection[int], prompts: Sequence[str] = PROBE_PROMPTS,
                 max_new: int = GREEDY_TOKENS) -> list[Expected]:
    """The probes of a model that reads no header (a merged preset, whose weights carry lambda, or a run
    trained without lambda): one per prompt, in the base's own chat template."""
    return [expected_probe(runtime, prompt, None, "", prompt_text(tokenizer, [{"role": "user", "content": prompt}]),
                           stop, max_new)
            for prompt in prompts]


def probe_lambdas(contract: ExportContract) -> list[dict[str, float] | None]:
    """The default lambda (None) and a vertex: all weight on the first objective."""
    return [None, {contract.objectives[0]: 1.0}]


def reference_probes(runtime, tokenizer, contract: ExportContract, stop: Collection[int],
                     prompts: Sequence[str] = PROBE_PROMPTS, max_new: int = GREEDY_TOKENS) -> list[Expected]:
    """Run the reference (an HFRuntime over the unmerged run model) on every probe."""
    expected = []
    for lam in probe_lambdas(contract):
        effective = lam if lam is not None else contract.lambda_default
        for prompt in prompts:
            messages = conditioned_messages([{"role": "user", "content": prompt}], effective, contract.objectives)
            text = prompt_text(tokenizer, messages)
            header = format_lambda_header(effective, contract.objectives)
            expected.append(expected_probe(runtime, prompt, lam, header, text, stop, max_new))
    return expected


@dataclass
class ProbeCheck:
    expected: Expected
    template_ok: bool
    tokens_ok: bool
    greedy: list[int] = field(repr=False)
    agreement: Agreement = field(repr=False)  # teacher-forced over tokens + expected.greedy

    @property
    def top1_agree(self) -> int:
        return int(self.agreement.agree.sum())

    @property
    def greedy_ok(self) -> bool:
        return self.greedy == self.expected.greedy

    @property
    def common_prefix(self) -> int:
        n = 0
        for a, b in zip(self.greedy, self.expected.greedy):
            if a != b:
                break
            n += 1
        return n


@dataclass
class VerificationReport:
    target: str  # e.g. "GGUF q8_0"
    exact: bool  # greedy tokens must agree (f16 / fp32 / hf)
    checks: list[ProbeCheck] = field(default_factory=list)

    @property
    def template_ok(self) -> bool:
        return all(c.template_ok for c in self.checks)

    @property
    def tokens_ok(self) -> bool:
        return all(c.tokens_ok for c in self.checks)

    @property
    def greedy_match(self) -> float:
        """Fraction of probes whose greedy continuation is identical."""
        return sum(c.greedy_ok for c in self.checks) / len(self.checks)

    @property
    def greedy_tokens(self) -> float:
        """Fraction of reference greedy tokens reproduced before the first divergence."""
        total = sum(max(len(c.expected.greedy), 1) for c in self.checks)
        return sum(c.common_prefix if c.expected.greedy else int(c.greedy_ok) for c in self.checks) / total

    @property
    def top1(self) -> float:
        """Fraction of positions where the next-token argmax agrees."""
        return sum(c.top1_agree for c in self.checks) / sum(len(c.expected.top1) for c in self.checks)

    @property
    def confident_flips(self) -> int:
        """Positions where the reference's top-2 margin is >= MIN_MARGIN and the export's argmax differs."""
        return sum(len(c.agreement.confident_disagreements) for c in self.checks)

    @property
    def knife_edge(self) -> int:
        """Positions whose reference margin is below MIN_MARGIN (not judged for exact exports)."""
        return sum(int((~c.agreement.confident).sum()) for c in self.checks)

    def failures(self) -> list[str]:
        reasons = []
        if not self.template_ok:
            reasons.append("the embedded chat template does not render the lambda header prompt exactly")
        if not self.tokens_ok:
            reasons.append("the file's tokenizer splits the probe prompts differently")
        if self.exact and self.confident_flips:
            worst = max(m for c in self.checks for _, m in c.agreement.confident_disagreements)
            reasons.append(f"the next token differs at {self.confident_flips} position(s) where the reference's top-2 "
                           f"margin is >= {MIN_MARGIN:g} logits (largest {worst:.2f})")
        if not self.exact and self.top1 < MIN_TOP1_QUANTIZED:
            reasons.append(f"top-1 agreement {self.top1:.1%} is below the {MIN_TOP1_QUANTIZED:.0%} floor")
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures()

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.target}: verification {verdict} - top-1 agreement {self.top1:.1%} "
                f"({self.confident_flips} flips where the reference margin >= {MIN_MARGIN:g}, {self.knife_edge} "
                f"near-tie positions not judged), greedy identical on {self.greedy_match:.0%} of probes "
                f"({self.greedy_tokens:.0%} of tokens), "
                f"template {'ok' if self.template_ok else 'WRONG'}, tokenizer {'ok' if self.tokens_ok else 'WRONG'}")

    def to_json(self) -> dict:
        return {"target": self.target, "passed": self.passed, "exact": self.exact, "greedy_match": self.greedy_match,
                "greedy_tokens": self.greedy_tokens, "top1": self.top1, "confident_flips": self.confident_flips,
                "knife_edge_positions": self.knife_edge, "min_margin": MIN_MARGIN, "template_ok": self.template_ok,
                "tokens_ok": self.tokens_ok, "probes": len(self.checks), "failures": self.failures()}


def verify(runtime, template: str, expected: Sequence[Expected], target: str, exact: bool,
           stop: Collection[int]) -> VerificationReport:
    """Check `runtime` (the export loaded in its runtime) and `template` (its chat template) against `expected`."""
    report = VerificationReport(target, exact)
    for probe in expected:
        variables = {LAMBDA_TEMPLATE_VARIABLE: probe.lam} if probe.lam is not None else {}
        rendered = render_chat_template(template, [{"role": "user", "content": probe.prompt}], **variables)
        greedy = runtime.greedy(probe.tokens, probe.max_new, stop)
        agreement = compare(probe.choices, runtime.logits(probe.tokens + probe.greedy))
        report.checks.append(ProbeCheck(probe, rendered == probe.text, runtime.tokenize(probe.text) == probe.tokens,
                                        greedy, agreement))
    return report
