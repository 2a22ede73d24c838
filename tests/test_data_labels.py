"""Kinetics label sets and the K710 merge agree with the shared index files."""
import json
import os

import numpy as np
import pytest

from videomae_jax.data import label_maps

SHARED = "/work/shared/data/kinetics_labels"


@pytest.mark.parametrize("label_set", ["k400", "k600", "k700"])
def test_every_class_maps_to_the_k710_row_of_the_official_index_file(label_set):
  names = label_maps.label_names(label_set)
  rows = label_maps.k710_head_rows(label_set)
  assert len(names) == len(rows) == int(label_set[1:])
  np.testing.assert_array_equal(label_maps.label_lookup(names, "k710"), rows)


def test_known_k400_names_and_synonyms():
  k710 = label_maps.label_names("k710")
  assert len(k710) == 710
  assert label_maps.label_index("abseiling", "k710") == k710.index("abseiling")
  # Exact names win: K710 keeps both throwing-ball classes.
  assert label_maps.label_index("throwing ball", "k710") == 348
  assert label_maps.label_index("throwing ball (not baseball or American football)", "k710") == 629
  # Synonyms of the merge table, and folder-style names.
  assert k710[label_maps.label_index("hugging", "k710")] == "hugging (not baby)"
  assert k710[label_maps.label_index("dying hair", "k710")] == "dyeing hair"
  assert label_maps.label_index("air_drumming", "k400") == label_maps.label_names("k400").index("air drumming")
  with pytest.raises(KeyError):
    label_maps.label_index("juggling penguins", "k710")


def test_packaged_files_match_the_shared_copies():
  if not os.path.isdir(SHARED):
    pytest.skip("shared label files not present (CI has only the repo)")
  for name in os.listdir(SHARED):
    if name.endswith((".txt", ".json")):
      packaged = open(os.path.join(label_maps.LABEL_MAP_DIR, name), "rb").read()
      assert packaged == open(os.path.join(SHARED, name), "rb").read(), name


def test_label_lookup_from_a_file_of_names(tmp_path):
  path = tmp_path / "names.txt"
  path.write_text("b\na\n")
  np.testing.assert_array_equal(label_maps.label_lookup(["a", "b", "a"], str(path)), [1, 0, 1])
  with pytest.raises(KeyError, match="c"):
    label_maps.label_lookup(["c"], str(path))
  rows = label_maps.k710_head_rows("k400")
  assert rows.tolist() == json.load(open(os.path.join(label_maps.LABEL_MAP_DIR, "label_710to400.json")))
