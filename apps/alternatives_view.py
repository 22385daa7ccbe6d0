"""The chat app's 'Alternatives' panel: N answers side by side, the user orders them, one record is saved.

    panel = alternatives_panel(model, FeedbackLog(path), mix_of)   # inside the gr.Blocks layout
    panel.wire(conversation, system_prompt, temperature, top_p, max_tokens, controls)

'Alternatives to the last answer' answers the conversation's last user turn again N times (2-4; the
same lambda with different seeds, or spread over lambda: apps/alternatives.py), filling one column
per candidate as it is done. 'Best' under a column records that pick (the others share rank 2);
ranking every column and 'Save this order' records a full order. Either way one record goes to the
feedback file (lwdpo_edge/feedback_data.py) and the counter under the panel (apps/feedback.py) shows
the total and the command that trains on it. Generating is one Gradio event on the model's lock,
like a chat turn.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import gradio as gr

from lwdpo_edge.apps.alternatives import MAX_N, MIN_N, MODES, SEEDS, iter_alternatives, last_exchange, sampling_settings
from lwdpo_edge.apps.chat_logic import conversation_messages
from lwdpo_edge.apps.feedback import counter_markdown
from lwdpo_edge.feedback_data import FeedbackError, FeedbackLog, judgement_record, ranks_from_best

LETTERS = "ABCD"


@dataclass
class AlternativesPanel:
    count: gr.Markdown
    n: gr.Slider
    mode: gr.Radio
    ask: gr.Button
    status: gr.Markdown
    columns: list
    texts: list
    best: list
    ranks: list
    save_order: gr.Button
    discard: gr.Button
    pending: gr.State
    handlers: tuple

    def wire(self, conversation, system_prompt, temperature, top_p, max_tokens, controls: list) -> None:
        """Connect the panel's events (controls: the lambda sliders, then the soup strength if any)."""
        generate, record_best, record_order, discard = self.handlers
        shown = [self.pending, self.status, *self.columns, *self.texts, *self.ranks]
        self.ask.click(generate,
                       [conversation, system_prompt, temperature, top_p, max_tokens, self.n, self.mode, *controls],
                       shown, api_name="alternatives", concurrency_limit=1)
        for i, button in enumerate(self.best):
            button.click(lambda pending, i=i: record_best(pending, i), self.pending, [*shown, self.count],
                         api_name=f"best_{LETTERS[i].lower()}")
        self.save_order.click(record_order, [self.pending, *self.ranks], [*shown, self.count], api_name="save_order")
        self.discard.click(discard, None, shown, api_name="discard_alternatives", queue=False)


def _hidden(status: str = "") -> list:
    """Panel outputs for 'nothing pending': every column hidden and emptied."""
    return [None, status, *[gr.update(visible=False)] * MAX_N, *[""] * MAX_N, *[gr.update(value=None)] * MAX_N]


def _make_handlers(model, log: FeedbackLog, mix_of):
    """(generate, record_best, record_order, discard), closed over the model, the log and mix_of(controls)
    -> (lambda, strength), the chat app's own reading of its sliders."""

    def generate(conversation, system_prompt, temperature, top_p, max_tokens, n, mode, *controls):
        turns = (conversation or {}).get("messages") or []
        last = last_exchange(turns)
        if last is None:
            raise gr.Error("nothing to offer alternatives to yet: send a message first")
        n, (lam, strength) = int(n), mix_of(controls)
        prompt = conversation_messages(system_prompt, turns[: last + 1])
        pending = {"prompt": prompt, "candidates": [], "lam": lam, "strength": strength, "mode": mode,
                   "settings": sampling_settings(temperature, top_p, max_tokens, None)}
        texts = [""] * MAX_N
        visible = [gr.update(visible=i < n) for i in range(MAX_N)]
        radios = [gr.update(value=None, choices=[str(r) for r in range(1, n + 1)]) for _ in range(MAX_N)]
        yield None, f"Generating {n} alternatives…", *visible, *texts, *radios
        # asked twice, the same answer gets new alternatives; the record keeps the seeds
        seed = secrets.randbelow(2**31)
        for i, candidate in enumerate(iter_alternatives(model, prompt, lam, n=n, mode=mode, strength=strength,
                                                        seed=seed, temperature=temperature, top_p=top_p,
                                                        max_tokens=int(max_tokens))):
            pending["candidates"].append(candidate)
            texts[i] = candidate.text
            done = i + 1 == n
            status = ("Pick the best (**Best**), or rank every answer and **Save this order**." if done
                      else f"Generating {n} alternatives… {i + 1} done")
            yield (pending if done else None), status, *visible, *texts, *[gr.skip()] * MAX_N

    def save(pending, ranks, judgement):
        if not pending:
            raise gr.Error("no alternatives to judge: ask for alternatives first")
        try:
            row = judgement_record(pending["prompt"], pending["candidates"], ranks, lam=pending["lam"],
                                   strength=pending["strength"],
                                   settings={**pending["settings"], "mode": pending["mode"]},
                                   model_info=model.info, judgement=judgement)
        except FeedbackError as err:
            raise gr.Error(str(err)) from None
        count = log.append(row)
        order = " > ".join(LETTERS[i] for i in sorted(range(len(ranks)), key=lambda i: ranks[i]))
        return [*_hidden(f"Saved judgement {count} ({order})."),
                counter_markdown(count, log.path, model.info.get("path"))]

    def record_best(pending, i):
        return save(pending, ranks_from_best(len(pending["candidates"]), i) if pending else [], "best")

    def record_order(pending, *ranks):
        n = len(pending["candidates"]) if pending else 0
        if any(r in (None, "") for r in ranks[:n]):
            raise gr.Error("give every answer a rank (1 = best) before saving the order, or click Best under one")
        return save(pending, [int(r) for r in ranks[:n]], "order")

    def discard():
        return _hidden("Discarded.")

    return generate, record_best, record_order, discard


def alternatives_panel(model, log: FeedbackLog, mix_of) -> AlternativesPanel:
    """Build the panel in the current layout (an Accordion); call .wire(...) once the inputs exist."""
    with gr.Accordion("Alternatives: rank answers to train your own slider", open=False, elem_id="alternatives"):
        with gr.Row():
            n = gr.Slider(MIN_N, MAX_N, value=3, step=1, label="how many", elem_id="alt-n", scale=1)
            mode = gr.Radio(list(MODES), value=SEEDS, label="how they differ", elem_id="alt-mode", scale=2)
            ask = gr.Button("Alternatives to the last answer", elem_id="alt-ask", scale=1)
        status = gr.Markdown("", elem_id="alt-status")
        columns, texts, best, ranks = [], [], [], []
        with gr.Row(equal_height=True):
            for i in range(MAX_N):
                with gr.Column(visible=False, min_width=160, elem_id=f"alt-col-{i}") as column:
                    texts.append(gr.Textbox(label=f"answer {LETTERS[i]}", lines=8, max_lines=16, interactive=False,
                                            elem_id=f"alt-text-{i}"))
                    best.append(gr.Button(f"{LETTERS[i]} is best", size="sm", elem_id=f"alt-best-{i}"))
                    ranks.append(gr.Radio([str(r) for r in range(1, MAX_N + 1)], label="or its rank (1 = best)",
                                          elem_id=f"alt-rank-{i}"))
                columns.append(column)
        with gr.Row():
            save_order = gr.Button("Save this order", size="sm", elem_id="alt-save-order")
            discard = gr.Button("Discard", size="sm", elem_id="alt-discard")
        count = gr.Markdown(counter_markdown(log.count(), log.path, model.info.get("path")), elem_id="feedback-count")
        pending = gr.State(None)
    return AlternativesPanel(count, n, mode, ask, status, columns, texts, best, ranks, save_order, discard, pending,
                             _make_handlers(model, log, mix_of))
