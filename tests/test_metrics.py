"""Metric writers: TensorBoard event files without TensorFlow, read back by TensorBoard's own loader; metrics.jsonl
on resume."""
import json
import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator

from videomae_jax import metrics


def test_tensorboard_events_read_back_by_tensorboard(tmp_path):
  writer = metrics.TensorBoardWriter(str(tmp_path / "tb"))
  writer.flush()
  assert not (tmp_path / "tb").exists()  # nothing logged, no file
  writer.write_scalars(10, {"train/loss": np.float32(0.5), "train/lr": 1e-3})
  writer.flush()
  writer.write_scalars(20, {"train/loss": 0.25})
  image = np.zeros((6, 8, 3), np.uint8)
  image[:, :4, 0] = 255
  writer.write_images(20, {"reconstruction": image})
  writer.close()
  assert len(os.listdir(tmp_path / "tb")) == 1  # flushes rewrite the run's one file
  events = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
  events.Reload()
  loss = events.Scalars("train/loss")
  assert [(e.step, e.value) for e in loss] == [(10, 0.5), (20, 0.25)]
  assert [e.step for e in events.Scalars("train/lr")] == [10]
  (picture,) = events.Images("reconstruction")
  assert (picture.step, picture.height, picture.width) == (20, 6, 8)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(picture.encoded_image_string))), image)


def test_jsonl_one_line_per_step_and_resume_drops_steps_past_the_checkpoint(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  writer = metrics.JsonlWriter(path)
  for step in (10, 20, 30):
    writer.write_scalars(step, {"train/loss": 1.0 / step})
    writer.write_scalars(step, {"perf/steps_per_second": 5.0})
    writer.flush()
  lines = [json.loads(line) for line in open(path)]
  assert [line["step"] for line in lines] == [10, 20, 30] and set(lines[0]) == {"step", "train/loss",
                                                                               "perf/steps_per_second"}
  resumed = metrics.JsonlWriter(path)
  resumed.truncate_after(20)  # the checkpoint was at 20; step 30 was logged before a crash
  resumed.write_scalars(30, {"train/loss": 0.5})
  resumed.flush()
  assert [(json.loads(line)["step"], json.loads(line)["train/loss"]) for line in open(path)] == [
      (10, 0.1), (20, 0.05), (30, 0.5)]
