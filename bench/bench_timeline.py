"""Timeline speed: windows per second of `predict_timeline` on a generated video, and where the time goes.

A video of ``--frames`` frames (``--size`` W H, 25 fps, H.264) is written to a temporary folder; the preset
(random initialisation, ``--override key=value`` for a smaller one) is built once and warmed up; then, in the
same run:

- ``timeline``: `predict_timeline` with the default stride (half a clip), Keras client, CLS attention kept;
- ``decode``: the streamed decode and windowing alone (`stream_frames` + resize + `sliding_windows`), no model;
- ``seek``: the same windows decoded one by one with `read_frames` (what a clip-at-a-time loop would do).

It prints windows/s of the timeline and the ratios decode / timeline and seek / decode (the streamed decode's
gain over seeking each window). Absolute times do not transfer between machines.

    python bench/bench_timeline.py                                    # rgb_r2plus1d_32f_34_bert10, full size
    python bench/bench_timeline.py --override num_frames=16 --override image_size=32 --frames 400   # quick
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from keras_bert3d.data.synthetic import write_video  # noqa: E402
from keras_bert3d.data.video_reader import read_frames, stream_frames  # noqa: E402
from keras_bert3d.models.builder import build_model  # noqa: E402
from keras_bert3d.serving import timeline as tl  # noqa: E402


def parse_override(text):
    key, _, value = text.partition("=")
    return key, json.loads(value) if value[:1] in "[{0123456789-" else value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="rgb_r2plus1d_32f_34_bert10")
    parser.add_argument("--override", action="append", default=[], type=parse_override)
    parser.add_argument("--frames", type=int, default=600, help="frames of the generated video")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    model = build_model(args.preset, 10, **dict(args.override))
    length = int(model.preprocessing["num_frames"])
    with tempfile.TemporaryDirectory() as folder:
        video = os.path.join(folder, "long.mp4")
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (50, args.size[1], args.size[0], 3), dtype=np.uint8)
        write_video(video, np.concatenate([base] * (args.frames // 50 + 1))[:args.frames], gop_size=25)
        tl.predict_timeline(video, model, batch_size=args.batch_size)  # warm-up: graphs, the frame table
        start = time.perf_counter()
        timeline = tl.predict_timeline(video, model, batch_size=args.batch_size)
        total = time.perf_counter() - start
        windows = len(timeline.windows)
        start = time.perf_counter()
        frames = tl.resized_stream(stream_frames(video), model.preprocessing["frame_size"])
        assert sum(1 for _ in tl.sliding_windows(frames, length, timeline.stride, timeline.fps, [])) == windows
        decode = time.perf_counter() - start
        start = time.perf_counter()
        for window in timeline.windows:
            read_frames(video, np.arange(window.start_frame, window.end_frame + 1))
        seek = time.perf_counter() - start
    print(f"{args.preset} {dict(args.override)}: {args.frames} frames {args.size[0]}x{args.size[1]}, {windows} windows "
          f"of {length} frames every {timeline.stride}, batch {args.batch_size}")
    print(f"timeline {windows / total:.2f} windows/s ({total:.1f} s); decode+resize+windows alone "
          f"{windows / decode:.1f} windows/s = {decode / total:.3f} of the timeline's time; seeking each window "
          f"instead: {seek / decode:.2f}x the streamed decode's time (without resizing)")


if __name__ == "__main__":
    main()
