"""`bert3d evaluate` of a long video in memory bounded by the clip (issue 22): a 100-second 1280x720 video
(3000 frames) under the reference protocol (cover x 10 crops) peaks under 3 GiB, measured as the evaluating
process's own ``ru_maxrss`` in a fresh subprocess (before streaming it peaked at 16 GiB: every decoded frame of
the video was held at full size)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRESET = "rgb_r2plus1d_32f_34_bert10"
TINY = dict(num_frames=8, image_size=32, stage_blocks=[1, 1, 1, 1], stage_filters=[8, 8, 16, 16],
            stem_filters=[6, 8], num_heads=2)
PEAK_LIMIT = 3 * 2**30
# Runs `bert3d evaluate` in this process and prints its peak resident memory (bytes) last: VmHWM, the high-water
# mark of this process's own memory. (ru_maxrss is not: Linux carries the parent's peak across fork/vfork + exec,
# so a child of a pytest worker that had built full-size models "peaked" at the worker's 6-7 GiB.)
_CHILD = """
import resource, sys
from keras_bert3d.cli import main
code = main(sys.argv[1:])
try:
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("peak", peak)
sys.exit(code)
"""


def write_long_video(path, num_frames=3000, height=720, width=1280, fps=30):
    """A cheap-to-encode (MPEG-4 part 2, flat grey with a moving block) video, written a frame at a time."""
    import av

    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qmax": "31"}
        frame = np.full((height, width, 3), 96, np.uint8)
        for i in range(num_frames):
            x = (i * 8) % (width - 64)
            frame[:, max(x - 8, 0):x + 64] = 96
            frame[300:364, x:x + 64] = (200, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def long_video_run(folder):
    """A synthetic UCF101 test set whose first test video is replaced by the long one, a saved tiny model and its
    config: the ``bert3d evaluate`` arguments (the issue's reproduction)."""
    import keras_bert3d
    from keras_bert3d.data.indexes import build_index
    from keras_bert3d.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(folder / "videos", num_classes=2, videos_per_class=2, num_frames=24, size=(64, 48),
                            seed=1, formats=("avi",))
    long_path = build_index("ucf101", folder / "videos", subset="test").records[0].path
    write_long_video(long_path)
    keras_bert3d.build_model(PRESET, 2, **TINY).save(folder / "tiny.keras")
    config = {"name": "long", "model": {"preset": PRESET, "num_classes": 2, "overrides": TINY},
              "data": {"dataset": "ucf101", "root": str(folder / "videos")}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return ["evaluate", str(folder / "tiny.keras"), "--config", str(folder / "config.yaml"), "--clips", "cover",
            "--crops", "10", "--output", str(folder / "eval"), "--quiet"]


@pytest.mark.full
def test_a_3000_frame_720p_video_is_evaluated_under_3_gib(tmp_path):
    args = long_video_run(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stdout.split("peak")[-1])
    assert peak < PEAK_LIMIT, f"evaluate peaked at {peak / 2**30:.2f} GiB"
    metrics = yaml.safe_load((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["videos"] == 2 and metrics["skipped_videos"] == 0
    # the long video's views are all there: cover clips of 8 frames over 3000, ten crops each
    assert metrics["mean_views"] * 2 >= 10 * (3000 // 8 - 2)


if __name__ == "__main__":  # python tests/training/test_evaluate_memory.py FOLDER: writes the run, prints the args
    import pathlib

    print(" ".join(long_video_run(pathlib.Path(sys.argv[1]))))
