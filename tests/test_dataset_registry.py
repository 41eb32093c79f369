"""The benchmark registry (avmaster_core.data.dataset_registry): what reads it, and adding a dataset as one spec."""
from __future__ import annotations

import dataclasses
import json

import pytest

import avmaster_core.data.annotations as annotations
from avmaster_core.data import dataset_registry, download, scoring
from avmaster_core.cli import build_parser


def test_every_reader_takes_the_registry():
    assert dataset_registry.DATASET_NAMES == ("music_avqa", "music_avqa_r", "music_avqa_v2", "avqa", "synthetic",
                                              "synthetic_mc")
    assert annotations.DATASETS == dataset_registry.DATASET_NAMES
    assert annotations.V2_SUBSETS == ("balance", "bias")
    assert download.OFFICIAL_FILES == dataset_registry.official_files()
    assert set(download.LICENCES) == {"music_avqa", "music_avqa_r", "music_avqa_v2", "avqa"}
    for spec in dataset_registry.SPECS:
        assert spec.table in ("table2", "table3", "table4", "table5"), spec.name
        assert all(f.dataset == spec.name for f in spec.files)
    assert dataset_registry.get("music_avqa_r").splits == ("test", "head", "tail", "headtail")
    with pytest.raises(ValueError, match="unknown dataset 'nope'; choose one of music_avqa"):
        dataset_registry.get("nope")


def test_data_fetch_choices_are_the_datasets_with_official_files():
    parser = build_parser()
    args = parser.parse_args(["data", "fetch", "avqa"])
    assert args.dataset == "avqa"
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "fetch", "synthetic"])  # generated locally, nothing to fetch


def test_a_new_dataset_is_one_spec(tmp_path, monkeypatch):
    toy = dataclasses.replace(dataset_registry.get("synthetic"), name="toy", title="toy benchmark",
                              obtain="make-toy {root}")
    monkeypatch.setitem(dataset_registry.REGISTRY, "toy", toy)
    monkeypatch.setattr(dataset_registry, "SPECS", dataset_registry.SPECS + (toy,))
    record = {"video_id": "00000001", "question_id": 5, "type": '["Audio", "Counting"]', "anser": "two",
              "question_content": "How many instruments are sounding?", "templ_values": "[]"}
    (tmp_path / "avqa-test.json").write_text(json.dumps([record]))
    records = annotations.load_annotations("toy", "test", tmp_path)
    assert records["dataset"].tolist() == ["toy"]
    assert scoring.score(records, {5: "two"}).loc["ours", ("Overall", "Avg")] == 100.0
    with pytest.raises(annotations.MissingAnnotationFile, match="make-toy"):
        annotations.load_annotations("toy", "train", tmp_path)
