"""GGUF lwdpo.* keys: the writer and the struct-only reader agree, and the reader agrees with gguf-py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lwdpo_edge.export import keys
from lwdpo_edge.export.contract import ExportContract

CONTRACT = ExportContract.from_manifest({"objectives": ["helpfulness", "conciseness", "readability"],
                                         "lambda_default": {"helpfulness": 1, "conciseness": 1, "readability": 1}})


def write_gguf(path: Path, contract: ExportContract | None = CONTRACT) -> Path:
    """A small GGUF with every kind of value the walker must skip (string / int / float arrays, scalars)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch="llama")
    writer.add_block_count(2)
    writer.add_float32("test.scale", 0.25)
    writer.add_bool("test.flag", True)
    writer.add_uint64("test.big", 2**40)
    writer.add_token_list(["<s>", "hello", "wörld", ""] * 50)
    writer.add_token_types([1, 2, 3, 1] * 50)
    writer.add_array("test.floats", [0.5, 1.5])
    writer.add_chat_template("{{ messages }}")
    if contract is not None:
        keys.add_lwdpo_keys(writer, contract)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_reader_returns_what_the_writer_wrote(tmp_path):
    metadata = keys.read_lwdpo_metadata(write_gguf(tmp_path / "m.gguf"))
    assert metadata == {
        "lwdpo_version": 1,
        "objectives": ["helpfulness", "conciseness", "readability"],
        "lambda_default": {"helpfulness": 0.34, "conciseness": 0.33, "readability": 0.33},  # float32 in the file
        "header_format": "[lambda] {name}={value:.2f} ...",
        "chat_template_variable": "lwdpo_lambda",
    }
    assert ExportContract.from_json(metadata) == CONTRACT


def test_walker_agrees_with_gguf_py_on_every_key(tmp_path):
    from gguf import GGUFReader

    path = write_gguf(tmp_path / "m.gguf")
    reference = {name: field.contents() for name, field in GGUFReader(path).fields.items() if not name.startswith("GGUF.")}
    ours = keys.read_gguf_keys(path, lambda key: True)
    assert ours.keys() == reference.keys()
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value) if isinstance(value, float) else ours[name] == value, name
    # and skipping: asking for one key after the big arrays still finds it
    assert keys.read_gguf_keys(path, lambda key: key == keys.CHAT_TEMPLATE) == {keys.CHAT_TEMPLATE: "{{ messages }}"}


def test_reader_errors_name_the_file(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=f"{text}: not a GGUF file"):
        keys.read_lwdpo_metadata(text)
    plain = write_gguf(tmp_path / "plain.gguf", contract=None)
    with pytest.raises(ValueError, match="not exported by lwdpo-edge"):
        keys.read_lwdpo_metadata(plain)
