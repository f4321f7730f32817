"""The on-disk embedding cache lists its folder only when a shard was added since."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from routelmt.encoders import EmbeddingCache


def test_a_lookup_lists_the_folder_only_after_a_new_shard(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTELMT_CACHE", str(tmp_path))
    writer, reader = EmbeddingCache("enc-test"), EmbeddingCache("enc-test")
    for i in range(5):
        writer.put([writer.key(f"t{i}")], np.full((1, 3), i, dtype=np.float32))
    listings = []
    real_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, p: listings.append(p) or real_glob(self, p))
    assert reader.get([reader.key("t3")])[0].tolist() == [3, 3, 3]
    for _ in range(20):
        reader.get([reader.key("t3")])
    assert len(listings) == 1  # one listing, however many lookups
    time.sleep(0.05)  # past the folder's mtime granularity
    writer.put([writer.key("new")], np.ones((1, 3), dtype=np.float32))
    assert reader.get([reader.key("new")])[0] is not None  # another process's shard is seen
    assert len(listings) == 2
