"""Where BERT's CLS token looks: its attention row, and the clip and picture that explain a prediction.

`cls_attention` is the one reading of a ``VideoClassifier.attention_model()`` output: row 0 (the CLS query)
of the last block's attention probabilities, heads averaged. `explain_clip` picks the clip that scored the
winning class highest and returns its frames as the model saw them (resized, centre-cropped) with that row per
BERT; `draw_explanation` draws them (``bert3d predict --explain OUT.png``).
"""
import typing

import numpy as np

MAX_THUMBNAILS = 16


def cls_attention(scores):
    """Attention probabilities ``(B, heads, N + 1, N + 1)`` -> ``(B, N + 1)``: where the CLS token (query 0)
    looks, heads averaged; column 0 is the CLS key itself, columns 1.. the temporal tokens."""
    return np.asarray(scores)[:, :, 0, :].mean(axis=1)


class Explanation(typing.NamedTuple):
    clip: int  # the row of the clip in the prediction's clips
    frames: np.ndarray  # uint8 (T, S, S, 3): the clip as the model saw it
    attention: dict  # {BERT layer name: (N,) CLS attention over the temporal tokens}
    to_cls: dict  # {BERT layer name: the CLS token's attention to itself}


def explain_clip(client, prediction, path):
    """The `Explanation` of ``prediction`` (a `VideoPrediction` of the `local_clients.KerasClient`
    ``client`` for the video at ``path``)."""
    from keras_bert3d.data.video_reader import read_frames

    winner = prediction.top[0][0]
    row = int(np.argmax(prediction.clip_scores[:, winner]))
    frames = read_frames(path, prediction.clip_indices[row])
    _, rows = client.attention(frames[None])
    seen = np.asarray(client.model.preprocessor.resize_and_crop(frames[None]))[0]  # as the model sees them
    return Explanation(row, seen, {name: r[0, 1:] for name, r in rows.items()},
                       {name: float(r[0, 0]) for name, r in rows.items()})


def draw_explanation(frames, attention, title, out_path, frame_numbers=None):
    """Writes the PNG: a strip of up to 16 frames over one bar chart per BERT (token i spans frames
    ``[i T / N, (i + 1) T / N)``; the bar colour and the frame tint follow the attention)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames = np.asarray(frames)
    length = len(frames)
    shown = np.unique(np.linspace(0, length - 1, min(length, MAX_THUMBNAILS)).round().astype(int))
    width = length / len(shown)
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(max(8.0, 0.9 * len(shown)), 2.2 + 1.6 * len(attention)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(attention), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [1.4] + [1.0] * len(attention)})[:, 0]
    first = next(iter(attention.values()))
    for j, t in enumerate(shown):
        token = min(int(t * len(first) / length), len(first) - 1)
        weight = first[token] / max(first.max(), 1e-9)
        axes[0].imshow(frames[t], extent=(j * width, (j + 1) * width, 0, 1), aspect="auto")
        axes[0].add_patch(_frame_border(j * width, width, cmap(weight)))
        label = t if frame_numbers is None else int(frame_numbers[t])
        axes[0].text((j + 0.5) * width, -0.08, str(label), ha="center", va="top", fontsize=7)
    axes[0].set_xlim(0, length)
    axes[0].set_ylim(-0.25, 1.05)
    axes[0].axis("off")
    axes[0].set_title(title, fontsize=10)
    for ax, (name, row) in zip(axes[1:], attention.items()):
        span = length / len(row)
        ax.bar(np.arange(len(row)) * span, row, width=span * 0.9, align="edge",
               color=[cmap(v / max(row.max(), 1e-9)) for v in row])
        ax.set_ylabel(f"{name}\nCLS attention", fontsize=8)
        ax.set_ylim(0, max(float(row.max()) * 1.15, 1e-6))
    ticks = np.arange(0, length + 1, length / len(first))
    numbers = np.arange(length) if frame_numbers is None else np.asarray(frame_numbers)
    axes[-1].set_xticks(ticks, [str(int(numbers[min(int(round(t)), length - 1)])) for t in ticks[:-1]] + [""])
    axes[-1].set_xlabel("video frame where each token's span starts (one bar per temporal token)")
    fig.tight_layout()
    fig.savefig(out_path)


def _frame_border(x, width, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x, 0), width, 1, fill=False, edgecolor=colour, linewidth=4)
