"""Apps stage (installed as lwdpo_edge.apps). The chat app (chat.py) and the OpenAI-compatible server (serve.py)."""
