"""A soup fake whose sampled answers differ by seed (as the runtime's do), and the chat app served with a
feedback file of the test's own."""

from __future__ import annotations

from chat_fake import FakeSoupModel, Served, free_port


class SeededSoup(FakeSoupModel):
    """Non-streamed answers (what alternatives ask for) name their seed and lambda; chat turns stream as
    FakeSoupModel's do."""

    def chat(self, messages, lam=None, *, stream=False, seed=None, **settings):
        if stream:
            return super().chat(messages, lam, stream=True, seed=seed, **settings)
        lam = self.validate_lambda(lam or self.default_lambda)
        self.mixes.append((lam, settings.get("strength")))
        self.received.append(list(messages))
        self.settings.append({"seed": seed, **settings})
        return f"answer {seed} to {messages[-1]['content']!r} at " + " ".join(f"{k}={v:.2f}" for k, v in lam.items())


class ServedWithFeedback(Served):
    """Served, with judgements written to `feedback_file` (never the user's real one)."""

    def __init__(self, model, history_dir, feedback_file):  # Served.__init__ with the feedback file passed on
        from gradio_client import Client

        from lwdpo_edge.apps.chat import build_app, launch_app
        from lwdpo_edge.apps.chat_config import ChatConfig

        self.model, self.history_dir, self.feedback_file = model, history_dir, feedback_file
        self.demo = build_app(model, history_dir, feedback_file=feedback_file)
        _, self.url, _ = launch_app(self.demo, ChatConfig(port=free_port(), open_browser=False), block=False)
        self.client = Client(self.url, verbose=False)
