"""`bert3d predict`: the top classes of a video file (multi-clip), and with ``--explain`` where BERT looks.

``--model`` is a ``.keras`` model (needed for ``--explain``), a SavedModel (``<dir>/<version>/``, or the
``<dir>`` of versions: the highest is used), or a served model: ``http://HOST:8501/v1/models/NAME[/versions/N]``
(TF Serving REST) or ``grpc://HOST:8500/NAME[/N]``. The clips of the video are classified in batches and
their logits averaged (the reference's multi-clip test, REFERENCE.md 5.12); a progress bar counts the clips
when the video needs more than one batch.

``--explain OUT.png`` draws the clip that scored the winning class highest: its frames (as the model saw
them: resized and centre-cropped) above the CLS token's attention over the temporal tokens (heads averaged;
the last BERT block), one bar per token placed over the frames it covers.
"""
import json
import os
import sys

import numpy as np

MAX_THUMBNAILS = 16


def add_arguments(parser):
    parser.add_argument("video", help="a video file (anything FFmpeg decodes)")
    parser.add_argument("--model", required=True,
                        help="MODEL.keras, a SavedModel dir, http://HOST:8501/v1/models/NAME or grpc://HOST:8500/NAME")
    parser.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    parser.add_argument("--clips", default="cover",
                        help="'cover' (the reference's non-overlapping clips, default), 'center', or K uniform clips")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per forward pass / request")
    parser.add_argument("--aggregate", choices=("logits", "probabilities"), default="logits",
                        help="average the clips' logits (the reference) or their probabilities")
    parser.add_argument("--class-names", help="one class name per line, or a JSON list (default: a SavedModel's own, or the "
                             "class_names.json next to a .keras file, as training runs write it)")
    parser.add_argument("--frames", type=int,
                        help="served models: frames per clip (the model's num_frames; the export's signature "
                             "does not fix it)")
    parser.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"),
                        help="served models: resize frames to H W before sending (smaller requests; give the "
                             "export's frame_size to keep the answer unchanged)")
    parser.add_argument("--explain", metavar="OUT.png", help="write the attention picture (.keras BERT models)")
    parser.add_argument("--timeline", nargs="?", const="", metavar="PNG",
                        help="slide the clip over the whole video: each window's start/end and top classes "
                             "(keras_bert3d.serving.timeline); PNG: also draw it (give it after VIDEO)")
    parser.add_argument("--stride", help="--timeline: window step, N frames or Ns seconds (default half a clip)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _saved_model_dir(path):
    """``path`` itself, or its highest numeric version folder holding a saved_model.pb."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(d) for d in os.listdir(path) if d.isdigit()
                and os.path.exists(os.path.join(path, d, "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"{path}: neither a SavedModel (no saved_model.pb) nor a folder of versions")
    return os.path.join(path, str(max(versions)))


def make_client(model, class_names=None, frame_size=None, clip_len=None):
    """The client for ``--model``: Keras, SavedModel, REST or gRPC (``clip_len``, ``frame_size``: servers)."""
    from keras_bert3d.serving import clients

    served = dict(clip_len=clip_len, class_names=class_names, frame_size=frame_size)
    if model.startswith(("http://", "https://")):
        return clients.RestClient.from_url(model, **served)
    if model.startswith("grpc://"):
        return clients.GrpcClient.from_url(model, **served)
    if not os.path.exists(model):
        raise FileNotFoundError(f"--model {model}: no such file or directory")
    if os.path.isdir(model):
        return clients.SavedModelClient(_saved_model_dir(model), class_names=class_names)
    if not model.endswith((".keras", ".h5")):
        raise ValueError(f"--model {model}: expected a .keras file, a SavedModel dir or a server URL")
    import keras

    import keras_bert3d  # noqa: F401  (registers the serializable classes)

    return clients.KerasClient(keras.saving.load_model(model), class_names=class_names)


def _check_rgb(client, model):
    prep = getattr(client, "preprocessing", None) or {}
    if prep.get("modality", "rgb") != "rgb" or len(prep.get("mean", [0, 0, 0])) != 3:
        raise ValueError(f"{model} is a {prep.get('modality', 'flow')} model ({len(prep.get('mean', []))} channels); "
                         "predict decodes RGB frames: use an rgb_* model")


def _progress(enabled, batch_size, description):
    def factory(total):
        from tqdm import tqdm

        return tqdm(total=total, unit="clip", desc=description, file=sys.stderr,
                    disable=not enabled or total <= batch_size)
    return factory


def explain_clip(client, prediction, path):
    """(clip row, uint8 frames as the model saw them (T, S, S, 3), {bert name: (N,) CLS attention},
    {bert name: CLS self-attention}) for the clip that scored the winning class highest."""
    from keras_bert3d.data.video_reader import read_frames

    model = client.model
    winner = prediction.top[0][0]
    row = int(np.argmax(prediction.clip_scores[:, winner]))
    frames = read_frames(path, prediction.clip_indices[row])
    outputs = model.attention_model()(client.preprocess(frames[None]), training=False)
    seen = np.asarray(model.preprocessor.resize_and_crop(frames[None]))[0]  # as the model sees them
    attention, to_cls = {}, {}
    for name, scores in outputs.items():
        if name != "logits":
            cls_row = np.asarray(scores)[0, :, 0, :].mean(axis=0)  # CLS query, heads averaged
            attention[name], to_cls[name] = cls_row[1:], float(cls_row[0])
    return row, seen, attention, to_cls


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


def _report(args, client, prediction):
    name = getattr(getattr(client, "model", None), "name", None) or args.model
    print(f"{prediction.path}: {prediction.num_frames} frames, {len(prediction.clip_indices)} clip(s) of "
          f"{prediction.clip_indices.shape[1]} frames ({args.clips}), model {name}, "
          f"{args.aggregate} averaged")
    print(f"top-{len(prediction.top)} classes:")
    for rank, (index, label, p) in enumerate(prediction.top, 1):
        print(f"  {rank}. {label:<24s} (class {index:3d})  p={p:.4f}")


def run(args):
    from keras_bert3d.data.sampling import parse_clips
    from keras_bert3d.serving.clients import ServingError
    from keras_bert3d.serving.export import class_names_beside, read_class_names

    if args.top < 1 or args.batch_size < 1:
        raise ValueError(f"--top and --batch-size must be >= 1; received {args.top} and {args.batch_size}")
    parse_clips(args.clips)  # a bad --clips fails before the model loads
    names = read_class_names(args.class_names) if args.class_names else None
    if names is None and args.model.endswith(".keras"):
        names = class_names_beside(args.model)  # a training run's class_names.json
    client = make_client(args.model, names, args.frame_size, args.frames)
    _check_rgb(client, args.model)
    if args.timeline is not None:
        from keras_bert3d.serving.timeline import run_timeline

        return run_timeline(args, client)
    if args.explain:  # refuse before decoding anything
        model = getattr(client, "model", None)
        if model is None:
            raise ValueError("--explain needs a .keras model (a SavedModel or a server returns no attention)")
        if not model.bert_layers():
            raise ValueError(f"--explain needs a BERT model; {model.name} pools with "
                             f"{model.get_config().get('pooling')!r}")
    try:
        prediction = client.predict_video(args.video, clips=args.clips, batch_size=args.batch_size, top=args.top,
                                          method=args.aggregate,
                                          progress=_progress(not args.no_progress, args.batch_size, "predict"))
    except ServingError as err:
        hint = " (give --frames N)" if "frame count" in str(err) and args.frames is None else ""
        raise ValueError(f"{args.model}: {err}{hint}") from None
    result = {"video": prediction.path, "num_frames": prediction.num_frames,
              "clips": prediction.clip_indices[:, [0, -1]].tolist(),
              "top": [{"index": i, "class": c, "probability": p} for i, c, p in prediction.top]}
    if args.explain:
        row, frames, attention, to_cls = explain_clip(client, prediction, args.video)
        first, last = prediction.clip_indices[row, [0, -1]]
        index, label, p = prediction.top[0]
        title = (f"{os.path.basename(prediction.path)}: {label} (p={p:.3f}); clip {row + 1}/"
                 f"{len(prediction.clip_indices)}, frames {first}-{last}")
        draw_explanation(frames, attention, title, args.explain, prediction.clip_indices[row])
        result["explain"] = {"png": args.explain, "clip": row,
                             "attention": {k: v.tolist() for k, v in attention.items()}, "to_cls": to_cls}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _report(args, client, prediction)
    if args.explain:
        from keras_bert3d.cli.demo import attention_bars

        for name, row in attention.items():
            print(f"{name}: CLS attention over {row.size} temporal tokens of clip {result['explain']['clip'] + 1} "
                  f"(heads averaged; to the CLS key itself: {to_cls[name]:.3f})")
            print(attention_bars(row))
        print(f"wrote {args.explain}")
    return 0
