"""The masking picture's legend says what is drawn: blue only where there is blue, a scale for the heat map."""
import numpy as np

from videomae_jax import visualization

GRID, PATCH = (2, 2, 2), 4  # 2 tubelets of 2x2 tokens, 8x8-pixel frames


def _rows(kept_visible):
  frames = np.full((2, 8, 8, 3), 0.5, np.float32)
  scores = np.arange(8, dtype=np.float32) * 0.25  # largest 1.75
  visible = np.array([1, 0, 0, 0, 1, 0, 0, 0], bool)
  loss = ~visible & ~kept_visible
  return visualization.render_rows(frames, scores, visible, loss, kept_visible, GRID, PATCH)


def test_blue_is_in_the_legend_only_when_some_token_is_kept_without_loss():
  plain_mae = dict(_rows(np.zeros(8, bool)))
  (label,) = [name for name in plain_mae if name.startswith("decoder targets")]
  assert "red: loss" in label and "blue" not in label
  dual = _rows(np.array([0, 1, 0, 0, 0, 1, 0, 0], bool))
  label, targets = dual[3]
  assert "blue: seen, no loss" in label
  assert (targets[0, 0:4, 4:8, 2] > targets[0, 0:4, 4:8, 0]).all()  # the kept token's patch is blue-ish


def test_the_motion_row_gives_its_scale_and_draws_the_color_ramp():
  rows = _rows(np.zeros(8, bool))
  assert rows[1][0] == "motion score\n0 .. 1.75"
  picture = np.asarray(visualization.draw_grid(rows, "title", cell=64)).astype(int)
  ramp_row = picture[22 + 64 + 4 + 40 + 5, 4:visualization.LABEL_WIDTH - 12]  # the motion row's ramp
  np.testing.assert_allclose(ramp_row[0], visualization.heat_colors(np.zeros(1))[0], atol=1)
  np.testing.assert_allclose(ramp_row[-1], visualization.heat_colors(np.ones(1))[0], atol=1)
