"""`lwdpo-edge chat`: a local Gradio chat app with one lambda slider per objective.

    demo = build_app(load_model("model.gguf"), history_dir="~/.local/share/lwdpo-edge/chats")
    launch_app(demo, ChatConfig(open_browser=False))

The model is injected (build_app takes any object with the runtime's interface), so tests drive the
app with a tiny GGUF or a recording fake. Every control re-renders "Model receives": the system
message the runtime builds for the next turn, lambda header first. Nothing is fetched from the
network: analytics are off and the default theme's fonts are served by the app itself.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio reads it at import

import gradio as gr  # noqa: E402

from lwdpo_edge.apps.alternatives_view import alternatives_panel  # noqa: E402
from lwdpo_edge.apps.chat_config import ChatConfig, default_model_path  # noqa: E402
from lwdpo_edge.apps.chat_logic import (  # noqa: E402
    conversation_messages, default_lambda, model_info_markdown, presets, received_system, simplex_markdown,
    slider_lambda)
from lwdpo_edge.apps.history import ChatHistory, HistoryError  # noqa: E402
from lwdpo_edge.feedback_data import FeedbackLog  # noqa: E402
from lwdpo_edge.runtime import load_model  # noqa: E402
from lwdpo_edge.runtime.base import mix_text  # noqa: E402
from lwdpo_edge.contract import MAX_STRENGTH, Conditioning  # noqa: E402

TITLE = "lwdpo-edge chat"


def _is_soup(model) -> bool:
    return getattr(model, "conditioning", None) == "soup"


def _receives(model, lam, system_prompt: str, strength: float | None = None) -> str:
    """'Model receives': the system message (lambda header first), or for an adapter-soup model, which
    reads no header, the adapter mix and steering strength it runs with, then its system message."""
    system = received_system(model, lam, system_prompt)
    if not _is_soup(model):
        return system
    return mix_text(model.validate_lambda(lam), strength) + (f"\n{system}" if system else "")


def _split_controls(model, controls) -> tuple[list[float], float | None]:
    """The handlers' trailing inputs: one weight per objective, then (soup models only) the strength."""
    k = len(model.objectives)
    return list(controls[:k]), (float(controls[k]) if _is_soup(model) and len(controls) > k else None)


def _mix(model, controls) -> tuple[dict[str, float] | None, float | None]:
    """(lambda, strength) the sliders set: what a turn, or its alternatives, is generated at."""
    weights, strength = _split_controls(model, controls)
    return slider_lambda(model, weights)[0], strength


def _view(turns: list[dict]) -> list[dict]:
    """The chatbot's value: role and content only (the saved turns carry more)."""
    return [{"role": m["role"], "content": m["content"]} for m in turns]


def _make_handlers(model, history: ChatHistory):
    """The app's event functions, closed over the model and the history folder."""

    def preview(system_prompt, *controls):
        weights, strength = _split_controls(model, controls)
        lam, note = slider_lambda(model, weights)
        return simplex_markdown(lam, note), _receives(model, lam, system_prompt, strength)

    def respond(message, conversation, system_prompt, temperature, top_p, max_tokens, *controls):
        if not (message or "").strip():
            yield gr.skip(), gr.skip(), gr.skip()
            return
        conversation = conversation or history.new_conversation(model.info)
        weights, strength = _split_controls(model, controls)
        lam, _ = slider_lambda(model, weights)
        turns = conversation["messages"]
        turns.append({"role": "user", "content": message})
        messages = conversation_messages(system_prompt, turns)
        settings = {"temperature": float(temperature), "top_p": float(top_p), "max_tokens": int(max_tokens)}
        if strength is not None:
            settings["strength"] = strength
        reply = {"role": "assistant", "content": "", "system": _receives(model, lam, system_prompt, strength),
                 "lambda": lam, "settings": settings, "stopped": True}  # True until the stream runs out
        turns.append(reply)
        yield _view(turns), conversation, ""
        stream = None
        try:  # Stop closes this generator: the finally closes the model's stream, which stops decoding
            stream = model.chat(messages, lam, stream=True, **settings)  # raises on a bad request / full context
            for piece in stream:
                reply["content"] += piece
                yield _view(turns), conversation, ""
            reply["stopped"] = False
        except Exception as err:  # a runtime error (e.g. context full) ends the turn, not the app
            if reply["content"]:
                reply["error"] = str(err)
            else:  # nothing generated: the turn never happened, later prompts must not carry it
                del turns[-2:]
            raise gr.Error(f"generation failed: {err}") from None
        finally:
            if stream is not None:
                stream.close()
            if turns:
                history.save(conversation)

    def export(conversation):
        if not conversation or not conversation["messages"]:
            raise gr.Error("nothing to export yet: send a message first")
        path = history.path(conversation["id"])  # saved after every turn; export does not rewrite it
        return gr.update(value=str(path if path.is_file() else history.save(conversation)), visible=True)

    def load(conversation_id):
        try:
            conversation = history.load(conversation_id)
        except HistoryError as err:
            raise gr.Error(str(err)) from None
        # Sliders back where the last answer was generated (a lambda over other objectives is not restored).
        lam = next((m.get("lambda") for m in reversed(conversation["messages"]) if m["role"] == "assistant"), None)
        restore = [lam[name] for name in model.objectives] if lam and list(lam) == model.objectives else None
        return conversation, _view(conversation["messages"]), *(restore or [gr.skip()] * len(model.objectives))

    def saved_list():
        return gr.update(choices=history.list(), value=None)

    return preview, respond, export, load, saved_list


def _lambda_panel(model):
    """Sliders, live simplex values, preset buttons. -> (sliders, simplex markdown, preset buttons)."""
    default = default_lambda(model)
    gr.Markdown("### λ: what the answer should favour")
    steerable = getattr(model, "steerable", True)  # a merged preset: lambda fixed at export, shown not set
    sliders = [gr.Slider(0.0, 1.0, value=default[name], step=0.01, label=name, elem_id=f"lambda-{name}",
                         interactive=steerable,
                         info=("raw weight; normalised onto the simplex below" if steerable
                               else "fixed at export (merged preset)"))
               for name in model.objectives]
    simplex = gr.Markdown(simplex_markdown(default), elem_id="simplex")
    buttons = {}
    if sliders:
        with gr.Row():
            for name in presets(model):
                buttons[name] = gr.Button(f"{name} only" if name in model.objectives else name, size="sm",
                                          elem_id=f"preset-{name}")
    return sliders, simplex, buttons


def _strength_slider(model) -> list:
    """Soup models only: the steering strength of the adapter mix (lwdpo_edge/soup.py). -> [slider] or []."""
    if not _is_soup(model):
        return []
    return [gr.Slider(0.0, MAX_STRENGTH / 2, value=model.info.get("soup_strength") or 1.0, step=0.1,
                      label="steering strength", elem_id="strength",
                      info="1 = the plain λ-weighted adapter mix; higher pushes each objective further "
                           "(the balanced mix stays the same; very high values degrade answers)")]


def _receives_label(model) -> str:
    """Where lambda reaches the model, for the 'Model receives' box (contract.Conditioning)."""
    return {Conditioning.HEADER: "Model receives (system message, lambda header first)",
            Conditioning.SOUP: "Model receives (adapter mix, then the system message)",
            Conditioning.MERGED: "Model receives (system message; lambda is merged into the weights)",
            }.get(getattr(model, "conditioning", None), "Model receives (system message)")


def _system_prompt_label(model) -> str:
    header = getattr(model, "conditioning", None) == Conditioning.HEADER
    return "System prompt (after the lambda header)" if header else "System prompt"


def build_app(model, history_dir: Path | str, config: ChatConfig | None = None,
              feedback_file: Path | str | None = None) -> gr.Blocks:
    """The chat app for `model` (the runtime's interface); conversations are saved in `history_dir`,
    judgements of alternatives in `feedback_file` (default: config.feedback_path)."""
    config = config or ChatConfig()
    history = ChatHistory(Path(history_dir))
    preview, respond, export, load, saved_list = _make_handlers(model, history)
    table = presets(model)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        conversation = gr.State(None)
        gr.Markdown(f"## {TITLE} · `{Path(str(model.info.get('path', ''))).name}`")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chatbot")
                received = gr.Textbox(label=_receives_label(model), interactive=False,
                                      lines=1, max_lines=6, elem_id="received",
                                      value=_receives(model, default_lambda(model), "",
                                                      model.info.get("soup_strength") if _is_soup(model) else None))
                with gr.Row():
                    message = gr.Textbox(placeholder="Type a message, Enter to send", show_label=False, scale=6,
                                         elem_id="message", autofocus=True)
                    send = gr.Button("Send", variant="primary", scale=1, min_width=80)
                    stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
                with gr.Row():
                    new_chat = gr.Button("New chat", size="sm")
                    export_button = gr.Button("Export JSON", size="sm")
                export_file = gr.File(label="Exported conversation", interactive=False, visible=False, elem_id="export")
                alternatives = alternatives_panel(model, FeedbackLog(feedback_file or config.feedback_path),
                                                  lambda controls: _mix(model, controls))
            with gr.Column(scale=2):
                sliders, simplex, buttons = _lambda_panel(model)
                strength = _strength_slider(model)
                system_prompt = gr.Textbox(label=_system_prompt_label(model), lines=2, elem_id="system")
                with gr.Accordion("Sampling", open=True):
                    temperature = gr.Slider(0.0, 2.0, value=config.temperature, step=0.05,
                                            label="temperature (0 = greedy)", elem_id="temperature")
                    top_p = gr.Slider(0.05, 1.0, value=config.top_p, step=0.05, label="top-p", elem_id="top-p")
                    max_tokens = gr.Slider(16, 2048, value=config.max_tokens, step=16, label="max tokens",
                                           elem_id="max-tokens")
                with gr.Accordion("Saved conversations", open=False):
                    saved = gr.Dropdown(choices=history.list(), label=f"in {history.folder}", elem_id="saved",
                                        allow_custom_value=True)  # ids are checked by ChatHistory.load
                with gr.Accordion("Model", open=False):
                    gr.Markdown(model_info_markdown(model.info), elem_id="model-info")

        gr.on([s.change for s in sliders + strength] + [system_prompt.change], preview,
              [system_prompt, *sliders, *strength], [simplex, received], api_name="preview", show_progress="hidden",
              queue=False)
        for name, button in buttons.items():
            button.click(lambda values=table[name]: values, None, sliders, api_name=f"preset_{name}", queue=False)
        inputs = [message, conversation, system_prompt, temperature, top_p, max_tokens, *sliders, *strength]
        chat_event = gr.on([message.submit, send.click], respond, inputs, [chatbot, conversation, message],
                           api_name="respond", concurrency_limit=1)
        chat_event.then(saved_list, None, saved, api_name=False)
        stop.click(lambda: None, None, None, cancels=[chat_event], api_name="stop", queue=False)
        new_chat.click(lambda: (None, [], ""), None, [conversation, chatbot, message], api_name="new_chat", queue=False)
        export_button.click(export, conversation, export_file, api_name="export")
        saved.input(load, saved, [conversation, chatbot, *sliders], api_name="load_chat")
        alternatives.wire(conversation, system_prompt, temperature, top_p, max_tokens, [*sliders, *strength])
        demo.load(saved_list, None, saved, api_name=False)
    return demo


def launch_app(demo: gr.Blocks, config: ChatConfig, *, block: bool = True):
    """Serve the app on config.host:config.port; opens the browser unless config.open_browser is False."""
    demo.queue(default_concurrency_limit=1)
    return demo.launch(server_name=config.host, server_port=config.port, inbrowser=config.open_browser,
                       prevent_thread_lock=not block, theme=gr.themes.Default(), show_error=True, quiet=False)


def main(config: ChatConfig) -> None:
    """Load the model (or the demo export), build the app and serve it until Ctrl-C."""
    path = Path(config.model) if config.model else default_model_path()
    model = load_model(path, threads=config.threads, n_ctx=config.n_ctx)  # ModelLoadError names the path
    launch_app(build_app(model, config.history_path, config), config)  # feedback file: config.feedback_path
