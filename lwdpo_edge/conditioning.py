"""Turn (prompt messages, lambda) into the exact text a model sees, and a response into its turn.

Training, evaluation and the runtime all build prompts here, through the one header function
pair in `lwdpo_edge.lambdas`, so a model is always asked the way it was trained. `stop_tokens`
gives the token ids that end the assistant's turn (export verification and the HF runtime).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lwdpo_edge.lambdas import neutralize_header_marker, system_message_with_lambda


def conditioned_messages(
    messages: Sequence[Mapping[str, str]],
    lam: Mapping[str, float] | None,
    objectives: Sequence[str],
) -> list[dict[str, str]]:
    """Messages with the lambda header at the start of the system message (added if absent).

    Any header marker in user-supplied text is neutralised; with lam=None the messages only get
    that neutralisation (the unconditioned baseline: lambda never reaches the model).
    """
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    rest = [
        {"role": m["role"], "content": neutralize_header_marker(m["content"]) if m["role"] == "user" else m["content"]}
        for m in messages
        if m["role"] != "system"
    ]
    if lam is None:
        return ([{"role": "system", "content": neutralize_header_marker(system)}] if system else []) + rest
    return [{"role": "system", "content": system_message_with_lambda(lam, objectives, system)}] + rest


def prompt_text(tokenizer, messages: Sequence[Mapping[str, str]]) -> str:
    """The chat-formatted prompt, ending where the assistant's answer begins."""
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)


def response_text(tokenizer, messages: Sequence[Mapping[str, str]], response: str, prompt: str | None = None) -> str:
    """The assistant turn as the chat template writes it after `prompt`, end-of-turn token included.

    Including the end-of-turn token puts the decision to stop inside the loss.
    """
    prompt = prompt if prompt is not None else prompt_text(tokenizer, messages)
    full = tokenizer.apply_chat_template(
        list(messages) + [{"role": "assistant", "content": response}], tokenize=False
    )
    if full.startswith(prompt):
        return full[len(prompt):]
    # Templates that rewrite earlier turns when an answer follows: fall back to answer + EOS.
    return response + (tokenizer.eos_token or "")


def stop_tokens(model, tokenizer) -> set[int]:
    """End-of-turn ids: the tokenizer's eos and the generation config's (int or list)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}
