"""The embedded dataset: real encoded videos whose classes differ only in the ORDER of events.

Every video shows the same ``num_events`` events, one of each type (a coloured square: red, green,
blue, ...), each visible for ``event_frames`` frames at a random place on a noisy grey background.
The class is the order in which the event types appear (``RedGreenBlue``, ``RedBlueGreen``, ...).
Backgrounds, positions and times are drawn from one distribution whatever the class, so the time
average of a clip (what a 3D CNN with temporal global average pooling sees once its receptive field
is narrower than the gap between events) carries no class information, while ordered temporal tokens
(BERT pooling) do.

Guarantee: between the last frame of one event and the first frame of the next there are at least
``min_gap`` frames without any event, and every event lies at least ``margin`` frames from either
end of the video. A temporal receptive field of at most ``min_gap + 1`` frames therefore never sees
two events, and one of at most ``margin + 1`` frames that reaches past an end of the video (where
zero padding tells absolute time) sees no event. ``DEMO`` holds settings that give this guarantee
for the demo's small R(2+1)D. ``write_synthetic_dataset`` returns (and writes to ``synthetic.json``)
the values used.

Train on whole videos (clip length = ``num_frames``): a shorter clip can cut events out, and a
longer one loops the video (as the reference does for short videos), which makes orders that are
rotations of each other (``RedGreenBlue``, ``GreenBlueRed``) indistinguishable.

Layout (UCF101's): ``OUT/<Class>/v_<Class>_g<gg>_c<cc>.<ext>`` and, in OUT, ``classInd.txt``,
``trainlist0{1,2,3}.txt`` and ``testlist0{1,2,3}.txt`` with CRLF line ends; all clips of a group are
in the same subset of a split (as in UCF101), so ``ucf101_index(OUT)`` reads it.
"""
import itertools
import json
import math
import os

import numpy as np

from keras_bert3d.atomic import atomic_open
from keras_bert3d.validation import check_int_range

COLOURS = (("Red", (230, 40, 40)), ("Green", (40, 210, 40)), ("Blue", (40, 80, 240)),
           ("Yellow", (230, 220, 40)), ("Magenta", (220, 40, 220)), ("Cyan", (40, 220, 220)))
CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4"}
SPLITS = 3
# The demo's dataset (`bert3d synth OUT --demo`; training/configs/synthetic_*.yaml): 264-frame 20x16 videos with
# three 16-frame events >= 48 frames apart and >= 48 frames from either end. A temporal token of the demo's
# small R(2+1)D (one block per stage) sees 49 frames, so no token sees two events, or an event and a clip end
# (whose zero padding would tell absolute time): temporal average pooling is blind to the order by
# construction, ordered tokens are not (tests/training/test_demo.py measures the receptive field). Each event
# has its own 72-frame slot (a multiple of the stride, 8), so its phase does not tell its rank (`_event_starts`),
# and every frame is a keyframe: predicted frames would carry traces of an event into the gap (see gop_size).
DEMO = {"num_frames": 264, "size": (20, 16), "event_frames": 16, "event_size": 0.75, "min_gap": 48, "margin": 48,
        "gop_size": 1}
# Encoder settings: high quality; MJPEG is near-lossless (4:4:4, quantiser 1-2) for tests that need exact pixels.
_OPTIONS = {"libx264": {"crf": "18", "preset": "veryfast"}, "mjpeg": {"qmin": "1", "qmax": "2"}}


def _encoder(codec, ext):
    import av

    codec = codec or CODECS.get(ext)
    if codec is None:
        raise ValueError(f"no default codec for {ext!r} files; pass codec= (known: {sorted(CODECS)})")
    if codec == "libx264" and "libx264" not in av.codecs_available:
        codec = "mpeg4"  # an FFmpeg build without x264
    return codec


def write_video(path, frames, fps=25, codec=None, gop_size=12):
    """Encodes ``frames`` (uint8 ``(T, H, W, 3)`` RGB, even H and W) into ``path`` with PyAV.

    The codec follows the extension (mp4/mkv/mov: H.264, avi: MPEG-4 part 2) unless given
    (e.g. ``"mpeg4"``, or ``"mjpeg"``: near-lossless, full-resolution colour, for tests that compare
    pixels). H.264 and MPEG-4 use 4:2:0 colour at high quality. One keyframe every ``gop_size``
    frames (at most), single-threaded so the same frames always give the same file.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1; received {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even (4:2:0 video); received {height}x{width}")
    codec = _encoder(codec, os.path.splitext(os.fspath(path))[1].lower())
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj444p" if codec == "mjpeg" else "yuv420p"
        stream.gop_size = gop_size
        stream.codec_context.thread_count = 1
        stream.options = _OPTIONS.get(codec, {"qmax": "3"})
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def numbered_frames(num_frames, height=48, width=64):
    """Frames whose index is written in binary as full-width black/white bands (robust to
    compression and horizontal crops); `frame_numbers` reads them back."""
    bits = max(1, math.ceil(math.log2(max(num_frames, 2))))
    if height < 2 * bits:
        raise ValueError(f"height must be >= {2 * bits} to number {num_frames} frames; received {height}")
    band = height // bits
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        for b in range(bits):
            if (i >> b) & 1:
                frames[i, b * band:(b + 1) * band] = 255
    return frames


def frame_numbers(frames, num_frames):
    """The indices written by `numbered_frames(num_frames, ...)` into decoded ``frames`` (T, H, W, 3)."""
    frames = np.asarray(frames, np.float32)
    bits = max(1, math.ceil(math.log2(max(num_frames, 2))))
    band = frames.shape[1] // bits
    numbers = np.zeros(len(frames), np.int64)
    for b in range(bits):
        inner = frames[:, b * band + band // 4:(b + 1) * band - band // 4]  # away from the band edges
        numbers += (inner.mean(axis=(1, 2, 3)) > 127.5).astype(np.int64) << b
    return numbers


def _event_starts(rng, num_frames, num_events, event_frames, min_gap, margin):
    """Event starts with the gap and margin guarantees, each drawn on its own.

    The spare frames are shared out equally: event ``k`` owns a slot of ``width + 1`` possible starts
    (``width = spare // num_events``) and its start is uniform in it, independently of the other events,
    so its offset in its slot says nothing about its rank, nor (when the slots lie a multiple of a
    network's temporal stride apart: `DEMO`'s 72 frames, stride 8) its phase against that stride.
    (Uniform over all valid configurations would leak the rank: with little spare room the first event
    tends to sit early in its range and the last one late, and a strided network sees the phase.)"""
    spare = num_frames - 2 * margin - num_events * event_frames - (num_events - 1) * min_gap
    width = spare // num_events
    slots = margin + np.arange(num_events) * (event_frames + min_gap + width)
    return slots + rng.integers(0, width + 1, size=num_events)


def render_video(order, rng, num_frames, size, event_frames, min_gap, margin, noise=8, event_size=0.25):
    """One video of the ordered-events task: frames (T, H, W, 3) uint8 and its event list.

    A grey background (level drawn per video) with uniform per-pixel noise of +-``noise`` in every
    frame; event ``k`` of ``order`` is a square of colour ``COLOURS[order[k]]`` at a random place, its
    side ``event_size`` times the frame's shorter side (at least 4 pixels)."""
    width, height = size
    side = min(min(height, width), max(4, int(min(height, width) * event_size)))
    background = int(rng.integers(70, 131))
    grey = rng.integers(background - noise, background + noise + 1, (num_frames, height, width), dtype=np.int16)
    frames = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
    events = []
    for event_type, start in zip(order, _event_starts(rng, num_frames, len(order), event_frames, min_gap, margin)):
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        frames[start:start + event_frames, y:y + side, x:x + side] = COLOURS[event_type][1]
        events.append({"type": COLOURS[event_type][0], "start": int(start), "y": y, "x": x})
    return frames, events


def _write_lines(path, lines):
    with atomic_open(path, "w", newline="") as f:
        f.write("".join(line + "\r\n" for line in lines))


def write_synthetic_dataset(out_dir, num_classes=4, videos_per_class=10, num_frames=48, size=(64, 48), seed=0,
                            formats=("mp4", "avi"), num_events=None, event_frames=3, min_gap=None, margin=None,
                            clips_per_group=2, fps=25, event_size=0.25, gop_size=12):
    """Writes the ordered-events dataset (see the module docstring) into ``out_dir``.

    Args:
        num_classes: 2..720; classes are the first orders (permutations) of ``num_events`` event types.
        videos_per_class: >= 2, in groups of ``clips_per_group`` clips.
        num_frames: frames per video. size: ``(width, height)``, even numbers.
        seed: same seed and arguments -> the same frames (each video draws from ``[seed, class, video]``).
        formats: extensions used in turn within each class (mp4: H.264, avi: MPEG-4 part 2, mkv).
        num_events: event types per video (default: the fewest whose orders give ``num_classes``).
        event_frames: frames each event is visible.
        event_size: the side of an event's square as a fraction (0, 1] of the frame's shorter side.
        min_gap, margin: the guarantee of the module docstring; default: the largest gap leaving
            room for random times, ``(num_frames - num_events * event_frames) // (num_events + 2)``,
            and ``margin = min_gap // 2``.
        gop_size: frames per group of pictures (`write_video`). Predicted frames carry a faint trace of an
            event until the next keyframe (up to ``gop_size - 1`` frames after it), so the guarantee holds
            for the decoded frames only with ``gop_size=1`` (every frame a keyframe, as `DEMO` has).

    Returns:
        A JSON-ready dict (also written to ``OUT/synthetic.json``): the arguments, ``class_names``,
        ``min_gap``, ``margin`` and ``videos`` (path relative to OUT, label, class, group, events).
    """
    check_int_range("num_classes", num_classes, 2, math.factorial(len(COLOURS)))
    check_int_range("videos_per_class", videos_per_class, 2)
    check_int_range("clips_per_group", clips_per_group, 1)
    check_int_range("event_frames", event_frames, 1)
    check_int_range("gop_size", gop_size, 1)
    check_int_range("num_frames", num_frames, 2)
    if isinstance(event_size, bool) or not isinstance(event_size, (int, float)) or not 0 < event_size <= 1:
        raise ValueError(f"event_size must be a number in (0, 1]; received event_size={event_size!r}")
    width, height = (int(v) for v in size)
    if width < 8 or height < 8 or width % 2 or height % 2:
        raise ValueError(f"size must be (width, height), even and >= 8; received size={size!r}")
    formats = [f.lower().lstrip(".") for f in ([formats] if isinstance(formats, str) else formats)]
    for ext in formats:
        _encoder(None, "." + ext)
    if num_events is None:
        num_events = next(m for m in range(2, len(COLOURS) + 1) if math.factorial(m) >= num_classes)
    check_int_range("num_events", num_events, 2, len(COLOURS))
    if math.factorial(num_events) < num_classes:
        raise ValueError(f"{num_events} event types give {math.factorial(num_events)} orders, fewer than "
                         f"num_classes={num_classes}")
    if min_gap is None:
        min_gap = max(1, (num_frames - num_events * event_frames) // (num_events + 2))
    margin = min_gap // 2 if margin is None else margin
    check_int_range("min_gap", min_gap, 0)
    check_int_range("margin", margin, 0)
    needed = 2 * margin + num_events * event_frames + (num_events - 1) * min_gap
    if num_frames < needed:
        raise ValueError(f"num_frames={num_frames} is too short: {num_events} events of {event_frames} frames "
                         f"with min_gap={min_gap} and margin={margin} need {needed} frames")
    orders = list(itertools.permutations(range(num_events)))[:num_classes]
    class_names = ["".join(COLOURS[e][0] for e in order) for order in orders]
    clips_per_group = min(clips_per_group, max(1, videos_per_class // 2))
    num_groups = math.ceil(videos_per_class / clips_per_group)
    os.makedirs(out_dir, exist_ok=True)
    videos = []
    for label, (order, name) in enumerate(zip(orders, class_names)):
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
        for v in range(videos_per_class):
            rng = np.random.default_rng([seed, label, v])
            frames, events = render_video(order, rng, num_frames, (width, height), event_frames, min_gap, margin,
                                          event_size=event_size)
            group, clip = v // clips_per_group + 1, v % clips_per_group + 1
            rel = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.{formats[v % len(formats)]}"
            write_video(os.path.join(out_dir, rel), frames, fps=fps, gop_size=gop_size)
            videos.append({"path": rel, "label": label, "class": name, "group": group, "events": events})
    _write_lines(os.path.join(out_dir, "classInd.txt"), [f"{i + 1} {n}" for i, n in enumerate(class_names)])
    folds = min(SPLITS, num_groups)
    for split in range(1, SPLITS + 1):
        test = [v for v in videos if (v["group"] - 1) % folds == (split - 1) % folds]
        train = [v for v in videos if v not in test]
        _write_lines(os.path.join(out_dir, f"trainlist0{split}.txt"), [f"{v['path']} {v['label'] + 1}" for v in train])
        _write_lines(os.path.join(out_dir, f"testlist0{split}.txt"), [v["path"] for v in test])
    info = {"num_classes": num_classes, "videos_per_class": videos_per_class, "num_frames": num_frames,
            "size": [width, height], "seed": seed, "formats": formats, "num_events": num_events,
            "event_frames": event_frames, "event_size": event_size, "min_gap": min_gap, "margin": margin, "fps": fps, "gop_size": gop_size,
            "class_names": class_names, "videos": videos}
    with atomic_open(os.path.join(out_dir, "synthetic.json"), "w") as f:  # a truncated one would break `make demo`
        json.dump(info, f, indent=1)
    return info
