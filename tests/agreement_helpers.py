"""Backend comparisons that hold on any x86-64 CPU (docs/testing.md): see lwdpo_edge/agreement.py.

Two rules, used by every test that compares backends or checks a model's answer:
  - `confident_answer`: a greedy answer is compared as text only once every one of its tokens (and
    the end of turn after it) is shown to win by at least MIN_MARGIN logits in the reference; then no
    correct backend can choose otherwise, whatever SIMD kernels it was built with.
  - `assert_backends_agree`: otherwise, teacher-forced top-1 agreement over the reference's greedy
    continuation, judged where the reference's top-2 margin is at least MIN_MARGIN.
"""

from __future__ import annotations

from lwdpo_edge.agreement import MIN_MARGIN, Agreement, backend_agreement, top2_margin

# Two fp32 computations of one model in torch on one machine (a left-padded batch vs one row, a merged
# vs an unmerged LoRA, the soup mixer vs one adapter) differ by ~5e-6 in the logits (measured:
# padded batch vs single row 5.1e-6): greedy text is compared across them only when every step
# wins by at least this.
TORCH_PATH_TOLERANCE = 1e-3


def answer_margins(model, messages, lam=None, max_tokens: int = 24, **mix) -> tuple[str, list[float]]:
    """(greedy answer, the model's top-2 margin at each of its tokens and at the token after it)."""
    answer = model.chat(messages, lam, max_tokens=max_tokens,
                        repetition_penalty=1.0, **mix)  # the argmax path the margins describe
    logits = model.next_token_logits(messages, model.encode(answer), lam, **mix)
    return answer, [float(m) for m in top2_margin(logits)]


def confident_answer(model, messages, lam=None, max_tokens: int = 24, min_margin: float = MIN_MARGIN, **mix) -> str:
    """The greedy answer, after asserting that each of its tokens wins by >= min_margin."""
    answer, margins = answer_margins(model, messages, lam, max_tokens, **mix)
    assert min(margins) >= min_margin, f"{answer!r} has a knife-edge token: margins {[round(m, 3) for m in margins]}"
    return answer


def assert_backends_agree(reference, candidate, messages, lam=None, **mix) -> Agreement:
    agreement = backend_agreement(reference, candidate, messages, lam, **mix)
    assert agreement.ok, agreement.summary()
    return agreement


def greedy_margins(model, tokenizer, messages, max_new_tokens: int):
    """Top-2 margin of a transformers model's logits at each greedy step (generate's own scores).  -> (steps,)"""
    import torch

    from lwdpo_edge.conditioning import prompt_text

    inputs = tokenizer(prompt_text(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_scores=True,
                             return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    return top2_margin(torch.cat(out.scores).numpy())


# A backend's teacher-forced logits differ from its own incremental decoding only by the shape of the
# computation (batched vs one token at a time): a step is judged only when the penalised top-2 margin
# clears this, so a near-tie that the shape could flip is never judged.
SAME_BACKEND_MARGIN = 0.1


def assert_applies_repetition_rule(model, messages, lam=None, penalty: float = 1.8, max_tokens: int = 48, **mix) -> int:
    """The model's greedy answer under `penalty` follows lwdpo_edge/decoding.py's rule: each generated
    token is the argmax of penalize_recent(the same backend's teacher-forced logits, the generated tokens
    before it), checked at every step whose penalised top-2 margin is >= SAME_BACKEND_MARGIN; at least
    one checked step must be one the penalty decided (its plain argmax differs), and the penalty changes
    the answer. Returns the number of steps checked."""
    import numpy as np

    from lwdpo_edge.decoding import penalize_recent
    from lwdpo_edge.runtime.base import Usage

    plain = model.chat(messages, lam, max_tokens=max_tokens, repetition_penalty=1.0, **mix)
    usage = Usage()
    penalised = model.chat(messages, lam, max_tokens=max_tokens, repetition_penalty=penalty, usage=usage, **mix)
    assert penalised != plain, f"repetition_penalty={penalty} did not change {plain!r}"
    # The ids the model generated: a tiny random model's odd tokens need not survive decode -> encode.
    ids = list(usage.completion_ids)
    logits = model.next_token_logits(messages, ids, lam, **mix)  # (len(ids) + 1, V), no penalty
    checked, decided = 0, 0
    for step, token in enumerate(ids):
        raw = np.asarray(logits[step])
        rule = penalize_recent(raw, ids[:step], penalty)
        if float(top2_margin(rule[None])[0]) >= SAME_BACKEND_MARGIN:
            assert int(rule.argmax()) == token, f"step {step} of {penalised!r}: not the penalised argmax"
            checked += 1
            decided += int(raw.argmax()) != token
    assert checked >= 5 and decided >= 1, f"{checked} steps checked, {decided} decided by the penalty in {penalised!r}"
    return checked
