"""Verification: does the exported file behave like the trained model, lambda header included?

The reference is the run itself: the fp32 base with the adapter applied (not yet merged), i.e. what
`lwdpo-edge generate` runs, so a wrong merge shows up as well as a wrong conversion. For each probe
prompt at two lambdas (the default, and all weight on the first objective) the reference records
the prompt text, its tokens, the greedy continuation and the argmax at every position. The export is
then checked for:

    template  its own chat template, rendered with `lwdpo_lambda` (or without it, for the default),
              gives exactly the reference prompt text
    tokens    its own tokenizer gives exactly the reference tokens
    greedy    the same greedy continuation (required for f16 / fp32 / hf; reported for quantised)
    top-1     the fraction of positions (prompt + continuation, teacher-forced) where the argmax of
              the next-token logits agrees (reported; quantised files must reach MIN_TOP1_QUANTIZED,
              a floor that catches a broken file, not a quality bar)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from lwdpo_edge.conditioning import conditioned_messages, prompt_text
from lwdpo_edge.export.chat_template import render_chat_template
from lwdpo_edge.export.contract import TEMPLATE_VARIABLE, ExportContract
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
    top1: np.ndarray = field(repr=False)  # argmax at every position of tokens + greedy


def probe_lambdas(contract: ExportContract) -> list[dict[str, float] | None]:
    """The default lambda (None) and a vertex: all weight on the first objective."""
    return [None, {contract.objectives[0]: 1.0}]


def stop_tokens(model, tokenizer) -> set[int]:
    """End-of-turn ids: the tokenizer's eos and the generation config's (int or list)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}


def reference_probes(runtime, tokenizer, contract: ExportContract, stop: Collection[int],
                     prompts: Sequence[str] = PROBE_PROMPTS, max_new: int = GREEDY_TOKENS) -> list[Expected]:
    """Run the reference (an HFRuntime over the unmerged run model) on every probe."""
    expected = []
    for lam in probe_lambdas(contract):
        effective = lam if lam is not None else contract.lambda_default
        for prompt in prompts:
            messages = conditioned_messages([{"role": "user", "content": prompt}], effective, contract.objectives)
            text = prompt_text(tokenizer, messages)
            tokens = runtime.tokenize(text)
            greedy = runtime.greedy(tokens, max_new, stop)
            top1 = runtime.logits(tokens + greedy).argmax(-1)
            header = format_lambda_header(effective, contract.objectives)
            expected.append(Expected(prompt, lam, header, text, tokens, greedy, max_new, top1))
    return expected


@dataclass
class ProbeCheck:
    expected: Expected
    template_ok: bool
    tokens_ok: bool
    greedy: list[int] = field(repr=False)
    top1_agree: int

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

    def failures(self) -> list[str]:
        reasons = []
        if not self.template_ok:
            reasons.append("the embedded chat template does not render the lambda header prompt exactly")
        if not self.tokens_ok:
            reasons.append("the file's tokenizer splits the probe prompts differently")
        if self.exact and self.greedy_match < 1:
            reasons.append(f"greedy tokens differ on {sum(not c.greedy_ok for c in self.checks)} of {len(self.checks)} probes")
        if not self.exact and self.top1 < MIN_TOP1_QUANTIZED:
            reasons.append(f"top-1 agreement {self.top1:.1%} is below the {MIN_TOP1_QUANTIZED:.0%} floor")
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures()

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.target}: verification {verdict} - greedy identical on {self.greedy_match:.0%} of probes "
                f"({self.greedy_tokens:.0%} of tokens), top-1 agreement {self.top1:.1%}, "
                f"template {'ok' if self.template_ok else 'WRONG'}, tokenizer {'ok' if self.tokens_ok else 'WRONG'}")

    def to_json(self) -> dict:
        return {"target": self.target, "passed": self.passed, "exact": self.exact, "greedy_match": self.greedy_match,
                "greedy_tokens": self.greedy_tokens, "top1": self.top1, "template_ok": self.template_ok,
                "tokens_ok": self.tokens_ok, "probes": len(self.checks), "failures": self.failures()}


def verify(runtime, template: str, expected: Sequence[Expected], target: str, exact: bool,
           stop: Collection[int]) -> VerificationReport:
    """Check `runtime` (the export loaded in its runtime) and `template` (its chat template) against `expected`."""
    report = VerificationReport(target, exact)
    for probe in expected:
        variables = {TEMPLATE_VARIABLE: probe.lam} if probe.lam is not None else {}
        rendered = render_chat_template(template, [{"role": "user", "content": probe.prompt}], **variables)
        greedy = runtime.greedy(probe.tokens, probe.max_new, stop)
        top1 = runtime.logits(probe.tokens + probe.greedy).argmax(-1)
        report.checks.append(ProbeCheck(probe, rendered == probe.text, runtime.tokenize(probe.text) == probe.tokens,
                                        greedy, int((top1 == probe.top1).sum())))
    return report
