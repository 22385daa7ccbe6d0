"""Command-line / YAML parsing for `lwdpo-edge train` (HF's argument parser over LambdaDPOConfig)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

from lwdpo_edge.train.config import LambdaDPOConfig

DESCRIPTION = """Train a LoRA adapter with multi-preference lambda-weighted listwise DPO.

Examples:
  lwdpo-edge train --qlora --max-steps 60 --output runs/demo
  lwdpo-edge train --config train/configs/demo.yaml --learning-rate 5e-5
  lwdpo-edge train --config train/configs/demo.yaml --resume

Options below come first from --config (YAML, keys named like the flags with underscores),
then from the command line. All transformers TrainingArguments are accepted too."""


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        LambdaDPOConfig, prog="lwdpo-edge train", description=DESCRIPTION,
        usage="lwdpo-edge train [--config FILE] [--qlora] [--model M] [--data D] [--output DIR] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _list_own_options_first(parser)
    return parser


def _list_own_options_first(parser: argparse.ArgumentParser) -> None:
    """Show lwdpo-edge's options in their own group above the ~100 inherited TrainingArguments.

    argparse has no public way to move an action between groups; its group lists are plain lists.
    """
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    own_fields = [f.name for f in dataclasses.fields(LambdaDPOConfig)
                  if f.name not in inherited or f.name in _SHOWN_FIRST]
    group = parser.add_argument_group("lambda-DPO options (lwdpo-edge)")
    general = parser._action_groups[1]  # "options": where HfArgumentParser put every field
    for action in list(general._group_actions):
        if action.dest in own_fields:
            general._group_actions.remove(action)
            group._group_actions.append(action)
    parser._action_groups.remove(group)
    parser._action_groups.insert(0, group)
    general.title = "transformers TrainingArguments (all accepted)"


# Inherited options a user of this command sets most often: listed with the own options.
_SHOWN_FIRST = {"output_dir", "max_steps", "learning_rate", "per_device_train_batch_size", "seed"}


def _yaml_defaults(argv: list[str]) -> dict:
    """Read --config FILE (if any) so its values become the parser's defaults."""
    for flag in ("--config",):
        if flag in argv:
            index = argv.index(flag)
            if index + 1 >= len(argv):
                raise SystemExit("lwdpo-edge train: --config needs a YAML file")
            path = Path(argv[index + 1])
            if not path.is_file():
                raise SystemExit(f"lwdpo-edge train: config file {path} does not exist")
            values = yaml.safe_load(path.read_text()) or {}
            if not isinstance(values, dict):
                raise SystemExit(f"lwdpo-edge train: {path} must hold a mapping of option: value")
            return {key.replace("-", "_"): value for key, value in values.items()}
    return {}


def parse_train_args(argv: list[str] | None = None) -> LambdaDPOConfig:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    defaults = _yaml_defaults(argv)
    unknown = sorted(set(defaults) - set(LambdaDPOConfig.__dataclass_fields__))
    if unknown:
        raise SystemExit(f"lwdpo-edge train: unknown option(s) in config: {', '.join(unknown)}")
    parser.set_defaults(**defaults)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:  # a check in LambdaDPOConfig / TrainingArguments: one line, no traceback
        raise SystemExit(f"lwdpo-edge train: {err}") from None
    return config
