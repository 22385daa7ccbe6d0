"""`lwdpo-edge eval RUN_DIR`: how well a trained run ranks held-out lists and how far lambda steers it.

    heldout.py          held-out lists and prompts (--data, --prompts), checked against the run
    grid.py             the lambda points: vertices, edge midpoints, uniform centre
    metrics.py          pure per-list / per-sample statistics (top-1, Kendall tau, NDCG, Spearman)
    ranking.py          implicit rewards r = beta * (log pi - log pi_ref) on held-out lists
    backends.py         generate_batch(messages_list, max_new_tokens) -> answers (transformers now)
    controllability.py  greedy answers over the grid, scored by the raters, Spearman(lambda_k, score_k)
    criteria.py         the steering verdict's pass/fail checks, computed from the report
    plots.py            PNG figures
    report.py           report.json + plots + summary.md, published atomically as one folder
    run.py              the evaluation top to bottom (run_evaluation(EvalConfig(...)))
    cli.py              the typer command

Every policy number has a baseline next to it: the same base model with the adapter disabled,
asked under the same lambda headers.
"""
