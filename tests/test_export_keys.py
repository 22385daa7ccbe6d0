"""GGUF lwdpo.* keys: the writer and the struct-only reader agree, and the reader agrees with gguf-py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lwdpo_edge import gguf_keys as keys
from lwdpo_edge.export.onnx import onnx_metadata
from lwdpo_edge.export_contract import ExportContract
from lwdpo_edge.lambdas import HEADER_FORMAT

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
        "header_format": HEADER_FORMAT,
        "chat_template_variable": "lwdpo_lambda",
        "conditioning": "header",
    }
    assert ExportContract.from_json(metadata) == CONTRACT


def test_soup_keys_round_trip_and_old_header_files_still_read(tmp_path):
    import dataclasses

    soup = dataclasses.replace(CONTRACT, conditioning="soup", soup_strength=2.3,
                               soup_adapters=("m.helpfulness.lora.gguf", "m.conciseness.lora.gguf",
                                              "m.readability.lora.gguf"))
    path = write_gguf(tmp_path / "soup.gguf", soup)
    stored = keys.read_gguf_keys(path, lambda k: k in (keys.CONDITIONING, keys.SOUP_ADAPTERS, keys.SOUP_STRENGTH))
    assert stored[keys.SOUP_STRENGTH] == pytest.approx(2.3) and stored[keys.SOUP_STRENGTH] != 2.3  # float32 in the file
    assert {k: v for k, v in stored.items() if k != keys.SOUP_STRENGTH} == {
        keys.CONDITIONING: "soup", keys.SOUP_ADAPTERS: list(soup.soup_adapters)}
    metadata = keys.read_lwdpo_metadata(path)
    assert metadata["conditioning"] == "soup" and metadata["soup_adapters"] == list(soup.soup_adapters)
    assert ExportContract.from_json(metadata) == soup
    assert ExportContract.from_json(soup.to_json()) == soup  # the sidecar form round-trips too
    # a header export written before the conditioning key existed reads as a header export
    original = keys.add_lwdpo_keys

    def old_writer(writer, contract):
        original(writer, contract)
        del writer.kv_data[0][keys.CONDITIONING]

    keys.add_lwdpo_keys = old_writer
    try:
        old = write_gguf(tmp_path / "old.gguf")
    finally:
        keys.add_lwdpo_keys = original
    assert keys.CONDITIONING not in keys.read_gguf_keys(old, lambda k: True)
    assert keys.read_lwdpo_metadata(old)["conditioning"] == "header"
    assert ExportContract.from_json(keys.read_lwdpo_metadata(old)) == CONTRACT
    with pytest.raises(ValueError, match="soup_adapters lists 1 files for 3 objectives"):
        ExportContract.from_json({**soup.to_json(), "soup_adapters": ["x.gguf"]})
    with pytest.raises(ValueError, match="steering strength"):
        ExportContract.from_json({**soup.to_json(), "soup_strength": -2})
    # a soup file without the strength key (older exports) mixes at strength 1, the plain soup
    assert ExportContract.from_json(
        {k: v for k, v in soup.to_json().items() if k != "soup_strength"}).soup_strength == 1.0


def test_a_run_trained_without_lambda_exports_a_contract_with_no_lambda_in_it(tmp_path):
    run_manifest = {"lwdpo_version": 1, "objectives": list(CONTRACT.objectives), "conditioning": "none",
                    "lambda_default": CONTRACT.lambda_default, "header_format": HEADER_FORMAT}
    plain = ExportContract.from_manifest(run_manifest)
    assert not plain.takes_lambda and plain.objectives == () and plain.lambda_default == {}
    assert plain.to_json(format="hf fp32") == {"lwdpo_version": 1, "conditioning": "none", "format": "hf fp32"}
    assert ExportContract.from_json(plain.to_json()) == plain
    path = write_gguf(tmp_path / "plain.gguf", plain)
    assert keys.read_gguf_keys(path, lambda k: k.startswith(keys.PREFIX)) == {keys.VERSION: 1,
                                                                             keys.CONDITIONING: "none"}
    assert ExportContract.from_json(keys.read_lwdpo_metadata(path)) == plain
    assert onnx_metadata(plain) == {keys.VERSION: "1", keys.CONDITIONING: '"none"'}


def test_walker_agrees_with_gguf_py_on_every_key(tmp_path):
    from gguf import GGUFReader

    path = write_gguf(tmp_path / "m.gguf")
    reference = {name: field.contents() for name, field in GGUFReader(path).fields.items()
                 if not name.startswith("GGUF.")}
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
