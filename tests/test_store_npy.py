"""`avmaster store import|export|info`: released per-item .npy folders <-> the HDF5 store."""
from __future__ import annotations

import numpy as np
import pytest

from avmaster_core.cli import main
from avmaster_core.npy_io import RELEASED_DIRS, export_npy, import_npy
from avmaster_core.store import FeatureStore


def _released_layout(root, rng, dim=768):
    arrays = {}
    for kind, shape in {"audio": (60, 128), "visual": (60, dim), "question": (1, dim), "words": (1, 77, dim)}.items():
        (root / RELEASED_DIRS[kind]).mkdir(parents=True)
        keys = ["00000093", "00000094"] if kind in ("audio", "visual") else ["12", "13", "14"]
        for key in keys:
            arrays[kind, key] = rng.standard_normal(shape).astype(np.float32)
            np.save(root / RELEASED_DIRS[kind] / f"{key}.npy", arrays[kind, key])
    return arrays


def test_import_then_export_round_trip(tmp_path):
    arrays = _released_layout(tmp_path / "released", np.random.default_rng(0))
    store_path = tmp_path / "features.h5"
    assert main(["store", "import", str(store_path), "--root", str(tmp_path / "released")]) == 0
    with FeatureStore(store_path) as store:
        assert store.get("question", 12).shape == (768,) and store.get("words", 13).shape == (77, 768)
        np.testing.assert_array_equal(store.get("visual", "00000094"), arrays["visual", "00000094"])
    assert import_npy(store_path, {"audio": tmp_path / "released" / "vggish"}, progress=False) == {"audio": 0}
    assert main(["store", "export", str(store_path), "--out", str(tmp_path / "back")]) == 0
    for (kind, key), array in arrays.items():
        back = np.load(tmp_path / "back" / RELEASED_DIRS[kind] / f"{key}.npy")
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, array)  # same shape as released, [1,768] and [1,77,768] included
    assert main(["store", "info", str(store_path)]) == 0


def test_import_other_width_and_bad_input(tmp_path):
    _released_layout(tmp_path / "b32", np.random.default_rng(1), dim=512)  # ViT-B/32 features
    written = import_npy(tmp_path / "b32.h5", {k: tmp_path / "b32" / d for k, d in RELEASED_DIRS.items()},
                         progress=False)
    assert written == {"audio": 2, "visual": 2, "question": 3, "words": 3}
    with FeatureStore(tmp_path / "b32.h5") as store:  # widths learnt from the items and recorded
        assert (store.attrs["visual_dim"], store.attrs["text_dim"], store.attrs["audio_dim"]) == (512, 512, 128)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "a.npy", np.zeros((60, 128), np.float32))
    np.save(bad / "x.npy", np.zeros((60, 100), np.float32))  # another width than the first item
    with pytest.raises(ValueError, match=r"x.npy: width 100, where 1 of the 2 audio files have audio_dim=128"):
        import_npy(tmp_path / "bad.h5", {"audio": bad}, progress=False)
    with pytest.raises(ValueError, match="visual_dim=512"):  # a store keeps the width it was made with
        FeatureStore(tmp_path / "b32.h5", "a", widths={"visual_dim": 768})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_npy(tmp_path / "bad.h5", {"visual": tmp_path / "absent"}, progress=False)
    assert main(["store", "import", str(tmp_path / "x.h5")]) == 2
    with pytest.raises(ValueError, match="unknown feature kind"):
        export_npy(tmp_path / "b32.h5", tmp_path / "out", ["patch"], progress=False)
