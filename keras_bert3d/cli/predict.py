"""`bert3d predict`: the top classes of a video file (multi-clip), and with ``--explain`` where BERT looks.

``--model`` is a ``.keras`` model (needed for ``--explain``), a SavedModel (``<dir>/<version>/``, or the
``<dir>`` of versions: the highest is used), or a served model: ``http://HOST:8501/v1/models/NAME[/versions/N]``
(TF Serving REST) or ``grpc://HOST:8500/NAME[/N]``; a legacy ``.h5`` model file only with ``--unsafe-legacy-h5``
(it can run code when loaded). The clips of the video are classified in batches and
their logits averaged (the reference's multi-clip test, REFERENCE.md 5.12); a progress bar counts the clips
when the video needs more than one batch.

``--explain OUT.png`` draws the clip that scored the winning class highest: its frames (as the model saw
them: resized and centre-cropped) above the CLS token's attention over the temporal tokens (heads averaged;
the last BERT block), one bar per token placed over the frames it covers. The work is
`keras_bert3d.serving`'s (`open_client`, `VideoClient.predict_video`, `timeline.predict_timeline`,
`attention.explain_clip`); this module reads the flags and prints.
"""
import json
import os
import sys


def add_arguments(parser):
    parser.add_argument("video", help="a video file (anything FFmpeg decodes)")
    parser.add_argument("--model", required=True,
                        help="MODEL.keras, a SavedModel dir, http://HOST:8501/v1/models/NAME or grpc://HOST:8500/NAME")
    parser.add_argument("--unsafe-legacy-h5", action="store_true",
                        help="UNSAFE: accept a legacy .h5 model file (it can run code when loaded; Keras' HDF5 "
                             "loader has had safe_mode bypasses). Only for a file from someone you trust")
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


def _check_rgb(client, model):
    prep = getattr(client, "preprocessing", None) or {}
    if prep.get("modality", "rgb") != "rgb" or len(prep.get("mean", [0, 0, 0])) != 3:
        raise ValueError(f"{model} is a {prep.get('modality', 'flow')} model ({len(prep.get('mean', []))} channels); "
                         "predict decodes RGB frames: use an rgb_* model")


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
    from keras_bert3d.serving.model_files import read_class_names
    from keras_bert3d.serving.open_client import open_client
    from keras_bert3d.serving.video_client import ServingError, clip_progress

    if args.top < 1 or args.batch_size < 1:
        raise ValueError(f"--top and --batch-size must be >= 1; received {args.top} and {args.batch_size}")
    parse_clips(args.clips)  # a bad --clips fails before the model loads
    names = read_class_names(args.class_names) if args.class_names else None  # else the model's own
    client = open_client(args.model, names, args.frame_size, args.frames, args.unsafe_legacy_h5)
    _check_rgb(client, args.model)
    if args.timeline is not None:
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
                                          progress=clip_progress("predict", not args.no_progress, args.batch_size))
    except ServingError as err:
        hint = " (give --frames N)" if "frame count" in str(err) and args.frames is None else ""
        raise ValueError(f"{args.model}: {err}{hint}") from None
    result = {"video": prediction.path, "num_frames": prediction.num_frames,
              "clips": prediction.clip_indices[:, [0, -1]].tolist(),
              "top": [{"index": i, "class": c, "probability": p} for i, c, p in prediction.top]}
    if args.explain:
        from keras_bert3d.serving.attention import draw_explanation, explain_clip

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


def run_timeline(args, client):
    """`bert3d predict VIDEO --model M --timeline [PNG] [--stride N|Ns] [--json]`: the windows' top classes."""
    from keras_bert3d.serving.timeline import predict_timeline
    from keras_bert3d.serving.video_client import ServingError, clip_progress

    try:
        timeline = predict_timeline(args.video, client, stride=args.stride, top=args.top, batch_size=args.batch_size,
                                    method=args.aggregate, png=args.timeline or None,
                                    progress=clip_progress("timeline", not args.no_progress, args.batch_size))
    except ServingError as err:
        raise ValueError(f"{args.model}: {err}") from None
    result = timeline.to_dict(args.top)
    if args.timeline:
        result["png"] = args.timeline
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{timeline.video}: {timeline.num_frames} frames at {timeline.fps:.3f} fps, {len(timeline.windows)} windows "
          f"of {timeline.clip_len} frames every {timeline.stride}")
    for window in result["windows"]:
        best = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in window["top"][:3])
        print(f"  {window['start_s']:9.2f} - {window['end_s']:9.2f} s  {best}")
    print("video: " + "  ".join(f"{t['class']} {t['probability']:.3f}" for t in result["video_top"]))
    for note in timeline.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.timeline:
        print(f"wrote {args.timeline}")
    return 0
