"""What happens when in a long or untrimmed video: the model's clip slid over the whole video.

`predict_timeline` decodes the video once, in order (`video_reader.stream_frames`), keeps only the frames of
the windows in flight (one clip plus a batch of windows: memory does not grow with the video's length) and
scores each window through any client (`open_client.open_client`: a ``.keras`` model, a SavedModel, TF Serving
over REST or gRPC) with the clip-scoring loop of `video_client.VideoClient.score_batches`. Windows are
``clip_len`` consecutive frames every ``stride`` frames (default half a clip); when the last window stops short
of the end, one more is aligned to the last frame. A video shorter than a clip gives one window of its frames
looped, as the reference's test protocol builds a clip that does not fit (REFERENCE.md 5.12), and the timeline
says so in its ``notes``. The video's own top classes aggregate the
windows as `video_client.aggregate` does (the reference's mean of logits by default).

For BERT models loaded as ``.keras`` the timeline also keeps where the CLS token attends in each window
(`attention.cls_attention`: heads averaged, last block), drawn under the probabilities by `draw_timeline`.
``bert3d predict VIDEO --model M --timeline`` prints it (keras_bert3d/cli/predict.py).
"""
import collections
import json
import os
import typing

import numpy as np

from keras_bert3d.data.video_reader import StreamedFrame, probe, stream_frames
from keras_bert3d.serving.open_client import open_client
from keras_bert3d.serving.video_client import aggregate, class_name, resize_frames, softmax

RESIZE_CHUNK = 16  # frames resized together (one op call) on their way into the window buffer
PLOTTED_CLASSES = 5


class Window(typing.NamedTuple):
    start_frame: int
    end_frame: int  # inclusive
    start_s: float
    end_s: float  # the end of the last frame
    looped: bool = False


def parse_stride(value, clip_len, fps):
    """Frames between window starts: None -> half a clip; ``N`` / ``"N"`` -> N frames; ``"Ns"`` -> N seconds."""
    if value is None:
        return max(1, int(clip_len) // 2)
    text = str(value).strip().lower()
    try:
        if text.endswith("s"):
            frames = int(round(float(text[:-1]) * fps))
            if float(text[:-1]) <= 0:
                raise ValueError
            return max(1, frames)
        frames = int(text)
    except ValueError:
        raise ValueError(f"stride must be a number of frames (16) or of seconds (0.5s), > 0; received "
                         f"stride={value!r}") from None
    if frames < 1:
        raise ValueError(f"stride must be >= 1 frame; received stride={value!r}")
    return frames


class Timeline(typing.NamedTuple):
    """The windows of a video and the model's answer for each."""

    video: str
    num_frames: int  # frames decoded
    fps: float
    clip_len: int
    stride: int
    windows: list  # [Window]
    probabilities: np.ndarray  # (W, C) float32, each window's class probabilities
    video_probabilities: np.ndarray  # (C,) the windows aggregated
    class_names: list
    attention: typing.Optional[np.ndarray]  # (W, N) CLS attention over each window's tokens, or None
    notes: list  # sentences: looped short video, damage mid-stream, tail window

    def top(self, probabilities, k):
        best = np.argsort(-probabilities, kind="stable")[:int(k)]
        return [{"class": class_name(self.class_names, int(i)), "index": int(i), "probability": float(probabilities[i])}
                for i in best]

    def to_dict(self, top=5):
        windows = []
        for window, row in zip(self.windows, self.probabilities):
            entry = {"start_s": round(window.start_s, 3), "end_s": round(window.end_s, 3),
                     "start_frame": window.start_frame, "end_frame": window.end_frame, "top": self.top(row, top)}
            if window.looped:
                entry["looped"] = True
            windows.append(entry)
        return {"video": self.video, "num_frames": self.num_frames, "fps": self.fps, "clip_frames": self.clip_len,
                "stride_frames": self.stride, "windows": windows,
                "video_top": self.top(self.video_probabilities, top), "notes": list(self.notes)}

    def to_json(self, top=5):
        return json.dumps(self.to_dict(top), indent=1)


def resized_stream(frames, frame_size):
    """The stream with every frame resized to ``frame_size`` (`video_client.resize_frames`), a chunk of
    `RESIZE_CHUNK` frames per call."""
    chunk = []

    def flush():
        pixels = resize_frames(np.stack([f.pixels for f in chunk]), frame_size)
        out = [StreamedFrame(f.index, f.time_s, p) for f, p in zip(chunk, pixels)]
        chunk.clear()
        return out

    for frame in frames:
        chunk.append(frame)
        if len(chunk) == RESIZE_CHUNK:
            yield from flush()
    if chunk:
        yield from flush()


def sliding_windows(frames, clip_len, stride, fps, notes):
    """``(Window, uint8 clip (clip_len, H, W, 3))`` over a stream of frames, holding ``clip_len`` frames at most."""
    buffer = collections.deque(maxlen=clip_len)
    count, next_start, last_end = 0, 0, -1

    def window(start, clip, end_frame, end_s, looped=False):
        return Window(start, end_frame, clip[0].time_s, end_s, looped), np.stack([f.pixels for f in clip])

    for frame in frames:
        buffer.append(frame)
        count += 1
        if count >= clip_len and count - clip_len == next_start:
            yield window(next_start, list(buffer), count - 1, frame.time_s + 1.0 / fps)
            last_end, next_start = count - 1, next_start + stride
    if count == 0:
        return
    end_s = buffer[-1].time_s + 1.0 / fps
    if count < clip_len:
        notes.append(f"the video has {count} frames, fewer than a clip ({clip_len}): one window of its frames looped, "
                     f"as the reference's test protocol builds a clip that does not fit")
        held = list(buffer)
        yield window(0, [held[j % count] for j in range(clip_len)], count - 1, end_s, looped=True)
    elif last_end < count - 1:
        notes.append(f"the last window ends at the last frame ({count - 1}); it overlaps the one before it")
        yield window(count - clip_len, list(buffer), count - 1, end_s)


def expected_windows(num_frames, clip_len, stride):
    """How many windows `sliding_windows` gives for ``num_frames`` frames (the progress bar's total)."""
    if num_frames <= clip_len:
        return 1
    return (num_frames - clip_len) // stride + 1 + int((num_frames - clip_len) % stride > 0)


def _window_batches(windows_and_clips, batch_size, windows):
    """Stacks the clips of ``(Window, clip)`` pairs ``batch_size`` at a time, appending each batch's windows
    to ``windows`` as it leaves."""
    pending = []

    def take():
        windows.extend(w for w, _ in pending)
        batch = np.stack([clip for _, clip in pending])
        pending.clear()
        return batch

    for item in windows_and_clips:
        pending.append(item)
        if len(pending) == batch_size:
            yield take()
    if pending:
        yield take()


def predict_timeline(video, model, stride=None, top=5, batch_size=4, class_names=None, frame_size=None,
                     clip_len=None, method="logits", attention=True, png=None, progress=None):
    """The timeline of ``video``: every window's top classes, the video's, and (BERT) where CLS attends.

    Args:
        video: a video file (anything FFmpeg decodes).
        model: a client (`RestClient`, `GrpcClient`, `SavedModelClient`, `KerasClient`), a Keras model built
            by keras_bert3d, or what ``bert3d predict --model`` takes (a path or a server URL): `open_client`.
        stride: frames between window starts (int or ``"16"``) or seconds (``"0.5s"``); default half a clip.
        top: classes per window in `Timeline.to_dict`.
        batch_size: windows per forward pass / request.
        frame_size: ``[H, W]`` frames are resized to before they are sent; default the client's own, else
            the model's ``preprocessing["frame_size"]`` when the client knows it, else as decoded.
        clip_len: frames per window for a served model whose signature does not fix it.
        method: ``"logits"`` (the reference's mean of logits) or ``"probabilities"``: how windows aggregate
            into the video's classes.
        attention: keep the CLS attention of BERT ``.keras`` models.
        png: also draw the timeline there (`draw_timeline`).
        progress: None or a factory ``progress(total) -> bar`` (``update(n)``, ``close()``), e.g.
            `video_client.clip_progress`.

    Returns:
        A `Timeline`. Raises `VideoDecodeError` (naming the file) when the video does not decode at all.
    """
    client = open_client(model, class_names, frame_size, clip_len)
    video = os.fspath(video)
    info = probe(video)
    length = int(client.clip_len)
    step = parse_stride(stride, length, info.fps)
    size = frame_size or getattr(client, "frame_size", None) or (getattr(client, "preprocessing", None) or {}).get(
        "frame_size")
    notes, damage, windows = [], [], []
    frames = stream_frames(video, damage)
    if size is not None:
        frames = resized_stream(frames, [int(v) for v in size])
    batches = _window_batches(sliding_windows(frames, length, step, info.fps, notes), int(batch_size), windows)
    scored = client.score_batches(batches, expected_windows(info.num_frames, length, step), progress, attention)
    if damage:
        notes.append(f"the video breaks at frame {damage[0][0]} ({damage[0][1]}); the timeline stops there")
    probabilities = (softmax(scored.scores) if scored.kind == "logits" else scored.scores).astype(np.float32)
    timeline = Timeline(video, windows[-1].end_frame + 1, info.fps, length, step, windows, probabilities,
                        aggregate(scored.scores, scored.kind, method), list(client.class_names), scored.attention,
                        notes)
    if png:
        draw_timeline(timeline, png)
    return timeline


def draw_timeline(timeline, out_path, classes=PLOTTED_CLASSES):
    """Writes the PNG: each top class's probability over time (one point per window, at its centre, the
    winner of each window as a coloured band) and, for BERT models, the CLS attention over the video's time
    (each token's weight spread over the frames it covers, overlapping windows averaged)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    probabilities = timeline.probabilities
    winners = list(dict.fromkeys(np.argmax(probabilities, axis=1).tolist()))
    ranked = np.argsort(-timeline.video_probabilities, kind="stable").tolist()
    shown = (winners + [c for c in ranked if c not in winners])[:max(classes, 1)]
    centres = np.array([(w.start_s + w.end_s) / 2 for w in timeline.windows])
    colours = colormaps["tab10"]
    rows = 2 if timeline.attention is not None else 1
    fig = Figure(figsize=(10, 2.6 + 1.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 1][:rows]})[:, 0]
    ax = axes[0]
    for rank, c in enumerate(shown):
        ax.plot(centres, probabilities[:, c], marker=".", color=colours(rank % 10),
                label=class_name(timeline.class_names, c))
    for w, row in zip(timeline.windows, probabilities):
        best = int(np.argmax(row))
        if best in shown:
            ax.axvspan(w.start_s, w.end_s, ymin=0.0, ymax=0.04, color=colours(shown.index(best) % 10), alpha=0.6)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{os.path.basename(timeline.video)}: {len(timeline.windows)} windows of {timeline.clip_len} frames "
                 f"every {timeline.stride}", fontsize=10)
    if timeline.attention is not None:
        end = max(w.end_s for w in timeline.windows)
        bins = max(50, min(2000, 4 * len(timeline.windows)))
        total, counts = np.zeros(bins), np.zeros(bins)
        for w, row in zip(timeline.windows, timeline.attention):
            edges = np.linspace(w.start_s, w.end_s, len(row) + 1)
            for k, weight in enumerate(row):
                lo, hi = (int(edges[k] / end * bins), max(int(edges[k] / end * bins) + 1, int(edges[k + 1] / end * bins)))
                total[lo:hi] += weight
                counts[lo:hi] += 1
        strip = np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
        axes[1].imshow(strip[None], aspect="auto", extent=(0, end, 0, 1), cmap="viridis")
        axes[1].set_yticks([])
        axes[1].set_ylabel("CLS\nattention", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out_path)
