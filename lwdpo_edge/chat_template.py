"""The exported chat template: the base model's template behind a prelude that writes the lambda header.

An app that knows nothing of this package renders prompts with the model's own chat template (HF
`apply_chat_template`, llama-server's `chat_template_kwargs`, onnxruntime-genai's tokenizer). The
prelude makes that template do what `conditioned_messages` does in Python:

    lwdpo_lambda given    -> header from it (normalised and quantised exactly like `quantize_lambda`)
    system message starts -> kept as is (the app wrote the header itself, e.g. with this package)
      with "[lambda]"
    otherwise             -> header from the default lambda baked into the template

then the header starts the system message (added when absent), the user-supplied system prompt
follows on the next line, and "[lambda]" in user text is defused. `lwdpo_lambda` is a mapping
{objective: weight} or a list in objective order. The rendered prompt equals
`prompt_text(tokenizer, conditioned_messages(messages, lam, objectives))` character for character
(tests/test_export_chat_template.py), with one documented difference: Python also defuses markers
written with inner spaces or odd case ("[ Lambda ]"); Jinja has no regex, so the prelude defuses
"[lambda]", "[LAMBDA]" and "[Lambda]".

Only the Jinja subset that minja (the C++ engine of onnxruntime-genai, and of llama.cpp before its own
engine) implements is used: no `replace`, `float` or `sum` filters (split/join, `* 1.0` and loops
instead), and integer division avoided because minja divides integers as integers.

`lwdpo_chat_template` builds the template (the exporter writes it into every format);
`render_chat_template` renders any template as transformers does (the runtimes and export verification).
"""

from __future__ import annotations

import json
from functools import lru_cache

from lwdpo_edge.lambdas import HEADER_MARKER, LEVELS, WORDS_SEPARATOR

# @OBJECTIVES@ / @DEFAULT@ become JSON literals (valid Jinja). Everything is whitespace-trimmed so
# the prelude renders to nothing.
_PRELUDE = """\
{#- lwdpo-edge lambda contract: the system message starts with a header such as
    "[lambda] @EXAMPLE@". Pass lwdpo_lambda (a mapping objective -> weight) to choose lambda;
    without it a system message that already starts with "[lambda]" is kept, else the default below
    is used. -#}
{%- set lwdpo_objectives = @OBJECTIVES@ -%}
{%- set lwdpo_default = @DEFAULT@ -%}
{%- set lwdpo_levels = @LEVELS@ -%}
{%- macro lwdpo_defuse(text) -%}
  {{- ((text.split('[lambda]') | join('(lambda)')).split('[LAMBDA]') | join('(lambda)')).split('[Lambda]') \
| join('(lambda)') -}}
{%- endmacro -%}
{%- set lw = namespace(system=[], rest=[], weights=lwdpo_default, keep=false, error='', values=[], total=0.0,
                      scaled=[], units=[], used=0, rank=0, pairs=[], final=[], words=[], level='') -%}
{%- for m in messages -%}
  {%- if m['role'] == 'system' -%}
    {%- set lw.system = lw.system + [m['content']] -%}
  {%- elif m['role'] == 'user' and m['content'] is string -%}
    {%- set lw.rest = lw.rest + [{'role': 'user', 'content': lwdpo_defuse(m['content'])}] -%}
  {%- else -%}
    {%- set lw.rest = lw.rest + [m] -%}
  {%- endif -%}
{%- endfor -%}
{%- set lw_system = lw.system | join(' ') -%}
{%- if lwdpo_lambda is defined and lwdpo_lambda is not none -%}
  {%- set lw.weights = lwdpo_lambda -%}
{%- elif lw_system.strip().startswith('[lambda]') -%}
  {%- set lw.keep = true -%}
{%- endif -%}
{%- if lw.keep -%}
  {%- set messages = [{'role': 'system', 'content': lw_system}] + lw.rest -%}
{%- else -%}
  {#- normalise, then quantise to hundredths summing to 1, largest remainder first (quantize_lambda) -#}
  {%- if lw.weights is mapping -%}
    {%- for key in lw.weights -%}
      {%- if key not in lwdpo_objectives -%}{%- set lw.error = lw.error or 'unknown objective ' ~ key -%}{%- endif -%}
    {%- endfor -%}
  {%- elif lw.weights | length != lwdpo_objectives | length -%}
    {%- set lw.error = lw.error or 'expected one weight per objective' -%}
  {%- endif -%}
  {%- for name in lwdpo_objectives -%}
    {#- "* 1.0": Python's float(v); some engines divide integers as integers -#}
    {%- if lw.weights is mapping -%}
      {%- set v = (lw.weights[name] if name in lw.weights else 0) * 1.0 -%}
    {%- else -%}
      {%- set v = (lw.weights[loop.index0] if loop.index0 < lw.weights | length else 0) * 1.0 -%}
    {%- endif -%}
    {%- if v != v or v < 0 -%}{%- set lw.error = lw.error or 'weights must be non-negative numbers' -%}{%- endif -%}
    {%- set lw.values = lw.values + [v] -%}
    {%- set lw.total = lw.total + v -%}
  {%- endfor -%}
  {%- if lw.total <= 0 -%}{%- set lw.error = lw.error or 'weights sum to 0' -%}{%- endif -%}
  {%- if lw.error -%}{{ raise_exception('lwdpo_lambda: ' ~ lw.error ~ '; objectives are ' \
~ lwdpo_objectives | join(', ')) }}{%- endif -%}
  {%- for v in lw.values -%}
    {%- set s = v / lw.total * 100 -%}
    {%- set lw.scaled = lw.scaled + [s] -%}
    {%- set lw.units = lw.units + [s | int] -%}
    {%- set lw.used = lw.used + (s | int) -%}
  {%- endfor -%}
  {%- for i in range(lwdpo_objectives | length) -%}
    {%- set r = lw.scaled[i] - lw.units[i] -%}
    {%- set lw.rank = 0 -%}
    {%- for j in range(lwdpo_objectives | length) -%}
      {%- set rj = lw.scaled[j] - lw.units[j] -%}
      {%- if rj > r or (rj == r and j < i) -%}{%- set lw.rank = lw.rank + 1 -%}{%- endif -%}
    {%- endfor -%}
    {%- set u = lw.units[i] + (1 if lw.rank < 100 - lw.used else 0) -%}
    {%- set lw.final = lw.final + [u] -%}
    {%- set lw.pairs = lw.pairs + [lwdpo_objectives[i] ~ '=' ~ (u // 100) ~ '.' \
~ ('0' if u % 100 < 10 else '') ~ (u % 100)] -%}
  {%- endfor -%}
  {#- the words after the bar (lambda_in_words): non-zero weights, heaviest first, ties in objective order -#}
  {%- for position in range(lwdpo_objectives | length) -%}
    {%- for i in range(lwdpo_objectives | length) -%}
      {%- set lw.rank = 0 -%}
      {%- for j in range(lwdpo_objectives | length) -%}
        {%- if lw.final[j] > lw.final[i] or (lw.final[j] == lw.final[i] and j < i) -%}\
{%- set lw.rank = lw.rank + 1 -%}{%- endif -%}
      {%- endfor -%}
      {%- if lw.rank == position and lw.final[i] > 0 -%}
        {%- set lw.level = '' -%}
        {%- for level in lwdpo_levels -%}
          {%- if not lw.level and lw.final[i] >= level[0] -%}{%- set lw.level = level[1] -%}{%- endif -%}
        {%- endfor -%}
        {%- set lw.words = lw.words + [lwdpo_objectives[i] ~ ' ' ~ lw.level] -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- set lw_prompt = lwdpo_defuse(lw_system.strip()) -%}
  {%- set lw_header = '@MARKER@ ' ~ lw.pairs | join(' ') ~ '@SEPARATOR@' ~ lw.words | join(', ') -%}
  {%- set messages = [{'role': 'system', 'content': lw_header ~ ('\\n' ~ lw_prompt if lw_prompt else '')}] + lw.rest -%}
{%- endif -%}
"""


def lwdpo_chat_template(base_template: str, contract) -> str:
    """The base model's chat template with the lambda prelude in front (see module docstring)."""
    if HEADER_MARKER != "[lambda]":  # the prelude spells the marker out in `replace` / `startswith`
        raise AssertionError("update the chat template prelude for the new header marker")
    default = {name: contract.lambda_default[name] for name in contract.objectives}
    prelude = (
        _PRELUDE.replace("@OBJECTIVES@", json.dumps(list(contract.objectives)))
        .replace("@DEFAULT@", json.dumps(default))
        .replace("@EXAMPLE@", contract.default_header()[len(HEADER_MARKER) + 1:])
        .replace("@LEVELS@", json.dumps([list(level) for level in LEVELS]))
        .replace("@SEPARATOR@", WORDS_SEPARATOR)
        .replace("@MARKER@", HEADER_MARKER)
    )
    return prelude + base_template


def render_chat_template(template: str, messages, add_generation_prompt: bool = True, **variables) -> str:
    """Render `template` the way transformers does (sandboxed Jinja2, same options and helpers)."""
    return _compiled(template).render(messages=list(messages), add_generation_prompt=add_generation_prompt, **variables)


@lru_cache(maxsize=8)
def _compiled(template: str):
    from jinja2.exceptions import TemplateError  # optional: jinja2 (not a core dependency)
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # optional: jinja2 (not a core dependency)

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)
