"""lwdpo-edge: multi-preference lambda-weighted listwise DPO for small on-device models.

Importing the package switches off telemetry and hub access for the libraries it uses: the
toolkit never needs the network at run time.
"""

import logging as _logging
import os as _os
import warnings as _warnings

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TRL_TELEMETRY": "0",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    _os.environ.setdefault(_name, _value)

# bitsandbytes >= 0.49 tries to fetch an optional CPU kernel from the hub on AVX512-BF16 machines and
# warns when it cannot; the fallback kernel is the one we want offline, so the warning is noise.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
# peft (0.17-0.18) still reads transformers' deprecated `is_gradient_checkpointing` on every model it
# wraps; the FutureWarning is theirs to fix and tells a user nothing.
_warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)

from lwdpo_edge.lambdas import (  # noqa: E402
    DEFAULT_OBJECTIVES,
    LambdaError,
    format_lambda_header,
    normalize_lambda,
    parse_lambda_header,
)

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_OBJECTIVES",
    "LambdaError",
    "format_lambda_header",
    "lambda_dpo_loss",
    "load_model",
    "normalize_lambda",
    "parse_lambda_header",
]


def __getattr__(name):
    # The loss needs torch; import it lazily so `import lwdpo_edge` stays light for chat-only installs.
    if name == "lambda_dpo_loss":
        from lwdpo_edge.objective import lambda_dpo_loss  # torch: the objective imports it at its top

        return lambda_dpo_loss
    if name == "load_model":  # the runtime imports its backends (llama.cpp, torch ...) only on use
        from lwdpo_edge.runtime import load_model  # lazy: `import lwdpo_edge` (run by every submodule) stays light

        return load_model
    raise AttributeError(name)
