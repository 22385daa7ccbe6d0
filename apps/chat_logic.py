"""What the chat app computes, without any UI: slider weights -> lambda, presets, what the model receives.

Sliders hold raw weights in [0, 1]; the model gets them normalised and quantised onto the simplex by
the runtime (`model.validate_lambda`, i.e. lwdpo_edge.lambdas.quantize_lambda), and the app shows
those values and the exact system message `model.prompt_messages` builds, header included.
"""

from __future__ import annotations

from collections.abc import Sequence

from lwdpo_edge.lambdas import BALANCED, LambdaError, preset_lambdas

ALL_ZERO_NOTE = "All sliders are at 0, which is not a point on the simplex: using the model's default lambda."
MERGED_NOTE = "This file is a merged preset: lambda was fixed at export and the sliders cannot change it."
PREVIEW_USER = "(your message)"  # stands in for the next user turn when previewing the system message


def default_lambda(model) -> dict[str, float] | None:
    """The model's default lambda (uniform when its contract has none); None for a plain chat model."""
    if not model.objectives:
        return None
    return model.validate_lambda(model.default_lambda or dict.fromkeys(model.objectives, 1.0))


def slider_lambda(model, weights: Sequence[float]) -> tuple[dict[str, float] | None, str]:
    """(lambda the model gets, a note for the user) from the raw slider weights, in objective order."""
    if not model.objectives:
        return None, ""
    if not getattr(model, "steerable", True):  # a merged preset runs at its one lambda
        return default_lambda(model), MERGED_NOTE
    raw = dict(zip(model.objectives, (float(w) for w in weights)))
    if sum(raw.values()) <= 0 and all(w >= 0 for w in raw.values()):
        return default_lambda(model), ALL_ZERO_NOTE
    try:
        return model.validate_lambda(raw), ""
    except LambdaError as err:  # only reachable through the API: the sliders cannot go below 0
        return default_lambda(model), f"{err}: using the model's default lambda."


def presets(model) -> dict[str, list[float]]:
    """Slider positions of lwdpo_edge.lambdas.preset_lambdas: each objective's vertex, balanced and the
    model's default. Empty for a plain model or a merged preset (its lambda is fixed)."""
    objectives = model.objectives
    if not objectives or not getattr(model, "steerable", True):
        return {}
    table = {name: [lam[o] for o in objectives]
             for name, lam in preset_lambdas(objectives, default_lambda(model)).items()}
    table[BALANCED] = [1.0] * len(objectives)  # the same lambda; equal sliders at full read better than 0.34/0.33/0.33
    return table


def conversation_messages(system_prompt: str, turns: Sequence[dict]) -> list[dict[str, str]]:
    """Plain {role, content} messages for the model: the user's system prompt, then the turns."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return messages + [{"role": m["role"], "content": m["content"]} for m in turns]


def received_system(model, lam: dict[str, float] | None, system_prompt: str) -> str:
    """The system message the model receives for these settings ('' when it receives none)."""
    messages = model.prompt_messages(
        conversation_messages(system_prompt, [{"role": "user", "content": PREVIEW_USER}]), lam)
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else ""


def simplex_markdown(lam: dict[str, float] | None, note: str = "") -> str:
    """The normalised lambda as a small table with bars, plus the note (if any)."""
    if lam is None:
        return "This model carries no lambda contract: plain chat, no header."
    rows = ["| objective | λ | |", "|---|---:|---|"]
    rows += [f"| {name} | {value:.2f} | {'█' * round(value * 20)} |" for name, value in lam.items()]
    return "\n".join(rows) + (f"\n\n**{note}**" if note else "")


def model_info_markdown(info: dict) -> str:
    """File, format, quantization, objectives, default lambda, architecture, contract version."""
    default = info.get("default_lambda")
    default_text = ", ".join(f"{k}={v:.2f}" for k, v in default.items()) if default else "none"
    rows = [("file", f"`{info.get('path', '?')}`"), ("format", info.get("format") or "?"),
            ("quantization", info.get("quantization") or "?"), ("architecture", info.get("architecture") or "?"),
            ("objectives", ", ".join(info.get("objectives") or []) or "none (no lwdpo contract)"),
            ("default lambda", default_text), ("contract version", str(info.get("contract_version") or "none"))]
    if info.get("conditioning") == "none":
        rows.append(("lambda", "none: trained without lambda conditioning, a plain model"))
    merged = info.get("lambda_merged")
    if merged:
        rows.append(("lambda", "merged at export, fixed: " + ", ".join(f"{k}={v:.2f}" for k, v in merged.items())))
    return "\n".join(["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows])
