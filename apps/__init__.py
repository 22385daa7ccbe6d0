"""Apps stage (installed as lwdpo_edge.apps). Chat app and server arrive with the runtime issue."""
