"""One definition of the conditioning modes (lwdpo_edge.contract.Conditioning) for train, eval, export, runtime."""

from __future__ import annotations

import pytest

from lwdpo_edge.contract import (EXPORTED_CONDITIONINGS, RUN_CONDITIONINGS, TRAINED_CONDITIONINGS, Conditioning,
                                 RunFolderError)


def test_every_stage_takes_its_modes_from_the_one_enum():
    assert set(TRAINED_CONDITIONINGS) <= set(RUN_CONDITIONINGS) <= set(Conditioning)
    assert set(EXPORTED_CONDITIONINGS) <= set(Conditioning)
    assert Conditioning("soup") is Conditioning.SOUP and Conditioning.SOUP == "soup"  # lwdpo.json holds the value


def test_train_refuses_a_mode_it_cannot_train_and_names_the_ones_it_can(tmp_path):
    from lwdpo_edge.train.config import LambdaDPOConfig

    with pytest.raises(ValueError, match="must be one of soup, header, got 'merged'"):
        LambdaDPOConfig(output_dir=str(tmp_path), conditioning="merged")


def test_export_and_eval_name_the_modes_they_take(tmp_path):
    from lwdpo_edge.contract import write_run_manifest
    from lwdpo_edge.evaluate.run import check_run
    from lwdpo_edge.export_contract import ExportContract

    with pytest.raises(ValueError, match="expected one of header, soup, merged, none"):
        ExportContract.from_manifest({"objectives": ["a", "b"], "lambda_default": {"a": 0.5, "b": 0.5},
                                      "conditioning": "mixture"})
    write_run_manifest(tmp_path, ["a", "b"], base_model={"spec": "x"}, training={}, conditioning="mixture")
    with pytest.raises(RunFolderError, match="knows soup, header, none"):
        check_run(tmp_path)
