"""`clip_batches` (what `bert3d predict` scores): the clips of a video from one decoder pass, a batch at a time,
each frame resized as it decodes; the same pixels as decoding each clip on its own and resizing it."""
import numpy as np

from keras_bert3d.data import frame_timing, sampling, video_reader
from keras_bert3d.data.synthetic import numbered_frames, write_video
from keras_bert3d.serving.video_client import clip_batches, resize_frames


def test_one_pass_a_batch_at_a_time_same_pixels(tmp_path, monkeypatch):
    path = str(tmp_path / "long.avi")
    write_video(path, numbered_frames(150, 48, 64), codec="mpeg4", gop_size=12)
    clips = sampling.eval_clips(150, 8, "cover")
    expected = [resize_frames(video_reader.read_frames(path, row), [24, 30]) for row in clips]
    opened, decoded = [], []
    real_open = frame_timing.open_video  # every reader opens a file through frame_timing.open_with_table
    monkeypatch.setattr(frame_timing, "open_video", lambda p: opened.append(p) or real_open(p))
    monkeypatch.setattr(video_reader, "_frame_hook", lambda p, position: decoded.append(position))
    batches = list(clip_batches(path, clips, batch_size=4, frame_size=[24, 30]))
    assert [len(b) for b in batches] == [4] * (len(clips) // 4) + ([len(clips) % 4] if len(clips) % 4 else [])
    np.testing.assert_array_equal(np.concatenate(batches), np.stack(expected))
    assert opened == [path] and len(decoded) == len(set(decoded)) <= 150  # each frame decoded once
