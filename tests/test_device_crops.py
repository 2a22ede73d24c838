"""videomae_jax.device_crops: the train step's crop + resize equals OpenCV's INTER_LINEAR on the host path."""
import jax
import numpy as np
import pytest

from videomae_jax import device_crops
from videomae_jax.data import transforms

cv2 = pytest.importorskip("cv2")


def _host_views(canvas, crops, size):
  """The host path: transforms.crop_resize (OpenCV) of every box, flipped where asked."""
  views = []
  for clip, boxes in zip(canvas, crops):
    for x, y, w, h, flip, transposed in boxes:
      assert not transposed
      views.append(transforms.crop_resize(clip, (int(x), int(y), int(w), int(h)), size, flip=bool(flip)))
  return np.stack(views)


def test_matches_opencv_bilinear_within_one_gray_level():
  rng = np.random.default_rng(0)
  # Photo-like content (smooth + detail) in a 40x56 frame inside a 48x64 canvas.
  canvas = np.zeros((2, 3, 48, 64, 3), np.uint8)
  canvas[:, :, :40, :56] = rng.integers(0, 256, (2, 3, 40, 56, 3))
  boxes = [[(*transforms.multiscale_crop_box(40, 56, rng, output_size=24), int(rng.integers(2)), 0)
            for _ in range(5)] for _ in range(2)]
  boxes[0][0] = (3, 2, 24, 24, 1, 0)   # Exactly the output size: a plain (mirrored) copy.
  boxes[1][0] = (0, 0, 56, 40, 0, 0)   # The whole frame, squeezed (aspect change).
  crops = np.asarray(boxes, np.int32)
  got = np.asarray(jax.jit(device_crops.crop_resize, static_argnums=2)(canvas, crops, 24))
  want = _host_views(canvas, crops, 24)
  assert got.shape == (10, 3, 24, 24, 3) and got.dtype == np.uint8
  difference = np.abs(got.astype(int) - want.astype(int))
  assert difference.max() <= 1, difference.max()
  assert difference.mean() < 0.3
  np.testing.assert_array_equal(got[0], canvas[0, :, 2:26, 3:27][:, :, ::-1])  # Row order: clip-major.


def test_upsampling_small_boxes_matches_too():
  rng = np.random.default_rng(1)
  canvas = rng.integers(0, 256, (1, 2, 20, 20, 3), dtype=np.uint8)
  crops = np.array([[(2, 3, 13, 11, 0, 0), (0, 0, 20, 20, 1, 0)]], np.int32)
  got = np.asarray(device_crops.crop_resize(canvas, crops, 32))
  assert np.abs(got.astype(int) - _host_views(canvas, crops, 32).astype(int)).max() <= 1


def test_bad_shapes_fail_with_a_message():
  with pytest.raises(ValueError, match=r"crops \[C, R, 6\]"):
    device_crops.crop_resize(np.zeros((1, 2, 8, 8, 3), np.uint8), np.zeros((1, 4), np.int32), 4)


def test_a_transposed_clip_gives_the_views_of_the_clip_in_its_own_orientation():
  """A portrait clip placed transposed in a landscape canvas: the same views (and flips) as cutting the upright
  clip."""
  rng = np.random.default_rng(2)
  portrait = rng.integers(0, 256, (1, 3, 56, 40, 3), dtype=np.uint8)        # H 56 > W 40
  canvas = np.zeros((1, 3, 48, 64, 3), np.uint8)
  canvas[0, :, :40, :56] = portrait[0].transpose(0, 2, 1, 3)
  upright = [(*transforms.multiscale_crop_box(56, 40, rng, output_size=24), flip, 0) for flip in (0, 1, 0, 1)]
  marked = [box[:5] + (1,) for box in upright]
  got = np.asarray(jax.jit(device_crops.crop_resize, static_argnums=(2, 3))(canvas, np.asarray([marked], np.int32), 24,
                                                                           True))
  want = _host_views(portrait, np.asarray([upright], np.int32), 24)
  difference = np.abs(got.astype(int) - want.astype(int))
  assert difference.max() <= 1 and difference.mean() < 0.3
