"""The data `bench_data.py` measures on: real encoded videos, their frame folders and TFRecords.

Two kinds of video (`PROFILES`, ``--codecs``), as the datasets people train on store them:
- ``avi``: 320x240 MPEG-4 Part 2 in AVI at 25 fps, a keyframe every 12 frames (UCF101's files);
- ``mp4``: 340x256 H.264 in MP4 at 30 fps with B-frames (x264's ``veryfast`` preset: up to 3 between
  references), a keyframe every 90 frames, 3 s (Kinetics' 256-pixel short-side copies).
Each video shows a textured background panning under moving blobs, with light noise: it compresses like real
footage, not like white noise. Per video: its frames as an ``img_%05d.jpg`` folder (JPEG quality 90, full size,
as the reference's extracted frames) and, per input size, TFRecord shards of it written with the frames resized
to the preset's ``frame_size`` (what ``bert3d to-tfrecord --preset`` writes).
"""
import os
import time

import numpy as np

PROFILES = {
    "avi": {"ext": ".avi", "codec": "mpeg4", "size": (320, 240), "fps": 25, "gop": 12,
            "about": "320x240 MPEG-4 Part 2 .avi, 25 fps, keyframe every 12 frames (UCF101)"},
    "mp4": {"ext": ".mp4", "codec": "libx264", "size": (340, 256), "fps": 30, "gop": 90,
            "about": "340x256 H.264 .mp4 with B-frames, 30 fps, keyframe every 90 frames (Kinetics)"},
}
PICTURE_TYPES = {1: "I", 2: "P", 3: "B"}  # FFmpeg's AVPictureType


def render(num_frames, width, height, seed):
    """Natural-ish frames: a smooth random texture panning, three moving blobs, noise of +-3."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, (height // 16 + 3, width // 16 + 3 + num_frames // 8, 3)).astype(np.float32)
    texture = np.kron(coarse, np.ones((16, 16, 1), np.float32))
    yy, xx = np.mgrid[0:height, 0:width]
    blobs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-2, 2),
              rng.uniform(10, 30), rng.uniform(0, 255, 3)) for _ in range(3)]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = texture[t // 16 % 8:t // 16 % 8 + height, t // 2:t // 2 + width].copy()
        for x, y, vx, vy, r, colour in blobs:
            mask = (xx - (x + vx * t) % width) ** 2 + (yy - (y + vy * t) % height) ** 2 < r * r
            frame[mask] = colour
        frame += rng.uniform(-3, 3, frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def frame_types(path):
    """``{"I": n, "P": n, "B": n}``: the picture types of a video's frames (to show the B-frames are there)."""
    import av

    counts = {}
    with av.open(os.fspath(path)) as container:
        for frame in container.decode(video=0):
            name = PICTURE_TYPES.get(int(frame.pict_type), str(frame.pict_type))
            counts[name] = counts.get(name, 0) + 1
    return counts


def make_videos(root, codec, args):
    """``codec``'s videos and their frame folders; returns ``(video_index, frames_index, info)``."""
    from keras_bert3d.data.jpeg_frames import encode_jpeg
    from keras_bert3d.data.records import VideoIndex, VideoRecord
    from keras_bert3d.data.synthetic import write_video

    profile = PROFILES[codec]
    width, height = args.size or profile["size"]
    gop = args.gop or profile["gop"]
    start = time.perf_counter()
    classes = [f"class{k}" for k in range(4)]
    videos, folders = [], []
    for i in range(args.videos):
        frames = render(args.frames, width, height, seed=i)
        path = os.path.join(root, codec, "videos", f"v{i:03d}{profile['ext']}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, frames, fps=profile["fps"], codec=profile["codec"], gop_size=gop)
        folder = os.path.join(root, codec, "frames", f"v{i:03d}")
        os.makedirs(folder)
        for t, frame in enumerate(frames):
            with open(os.path.join(folder, f"img_{t + 1:05d}.jpg"), "wb") as f:
                f.write(encode_jpeg(frame, 90))
        label = i % len(classes)
        videos.append(VideoRecord(path, label, classes[label]))
        folders.append(VideoRecord(folder, label, classes[label], num_frames=args.frames))
    info = {"codec": codec, "about": profile["about"], "size": [width, height], "gop": gop, "fps": profile["fps"],
            "frame_types": frame_types(videos[0].path), "bytes_per_video": os.path.getsize(videos[0].path),
            "seconds": time.perf_counter() - start}
    return VideoIndex(videos, classes, source="video"), VideoIndex(folders, classes, source="frames"), info


def make_tfrecords(root, codec, label, video_index, frame_size, workers):
    """TFRecord shards of ``video_index`` at ``frame_size`` (`bert3d to-tfrecord --preset`); (folder, videos/s)."""
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    out = os.path.join(root, codec, f"tfrecord_{label}")
    start = time.perf_counter()
    write_tfrecords(video_index, out, frame_size=frame_size, workers=workers, progress=False)
    return out, len(video_index) / (time.perf_counter() - start)


def make_data(root, args, configs):
    """Per ``args.codecs`` kind: videos, frame folders, TFRecords per ``(label, preset)`` of ``configs``; dicts."""
    from keras_bert3d.models.builder import get_preset

    data = []
    for codec in args.codecs:
        videos, frames, info = make_videos(root, codec, args)
        info.update(videos=videos, frames=frames, tfrecords={}, write_videos_per_s={})
        for label, preset in configs:
            frame_size = get_preset(preset)["preprocessing"]["frame_size"]
            info["tfrecords"][label], info["write_videos_per_s"][label] = make_tfrecords(
                root, codec, label, videos, frame_size, args.workers)
        print(f"data {codec}: {info['about']}, {args.videos} videos of {args.frames} frames "
              f"({info['bytes_per_video'] / 1e3:.0f} kB each, frame types {info['frame_types']}) "
              f"+ frame folders + TFRecords in {info['seconds']:.0f} s", flush=True)
        data.append(info)
    return data


def dct_scaling_check(frame_size, seed=0, num_frames=4):
    """In-graph JPEG DCT scaling (``decode_jpeg(ratio=2)``) against full decode, both then resized bilinearly to
    ``frame_size``, on frames stored at twice ``frame_size``: mean |difference| in grey levels and ms per frame."""
    import tensorflow as tf

    from keras_bert3d.data import transforms
    from keras_bert3d.data.jpeg_frames import encode_jpeg

    height, width = 2 * frame_size[0], 2 * frame_size[1]
    jpegs = [tf.constant(encode_jpeg(frame, 90)) for frame in render(num_frames, width, height, seed)]
    full = tf.function(lambda j: transforms.resize(
        tf.io.decode_jpeg(j, channels=3, dct_method="INTEGER_ACCURATE"), frame_size))
    scaled = tf.function(lambda j: transforms.resize(
        tf.io.decode_jpeg(j, channels=3, ratio=2, dct_method="INTEGER_ACCURATE"), frame_size))
    diffs, times = [], {"full": 0.0, "ratio2": 0.0}
    for jpeg in jpegs:
        full(jpeg), scaled(jpeg)  # traced
        start = time.perf_counter()
        a = full(jpeg).numpy()
        middle = time.perf_counter()
        b = scaled(jpeg).numpy()
        times["full"] += middle - start
        times["ratio2"] += time.perf_counter() - middle
        diffs.append(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())
    return {"stored": [height, width], "frame_size": list(frame_size), "mean_abs_diff": float(np.mean(diffs)),
            "ms_full": 1000 * times["full"] / num_frames, "ms_ratio2": 1000 * times["ratio2"] / num_frames}
