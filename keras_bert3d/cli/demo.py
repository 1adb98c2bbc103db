"""`bert3d demo`: build a preset, run a clip through it, print the top classes and where BERT looks."""
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--model", default="rgb_r2plus1d_32f_34_bert10", help="a BERT preset (see `bert3d models`)")
    parser.add_argument("--num-classes", type=int, default=101)
    parser.add_argument("--weights", help="optional .weights.h5 (e.g. from `bert3d convert`)")
    parser.add_argument("--seed", type=int, default=0)


def synthetic_clip(preprocessing, seed=0):
    """A clip of a bright square crossing a textured background, normalised by the model's preprocessor rule."""
    from keras_bert3d.models.video_preprocessor import VideoPreprocessor

    rng = np.random.default_rng(seed)
    frames, size = preprocessing["num_frames"], preprocessing["crop_size"]
    channels = len(preprocessing["mean"])
    clip = rng.integers(40, 90, size=(frames, size, size, channels)).astype(np.float32)
    side = size // 4
    for t in range(frames):
        x = int((size - side) * t / max(frames - 1, 1))
        clip[t, size // 2 - side // 2:size // 2 + side // 2, x:x + side] = 230
    return np.asarray(VideoPreprocessor.from_preprocessing(preprocessing).normalize(clip[None]))


def attention_bars(row, width=40):
    """CLS attention over the temporal tokens, one text bar per token."""
    lines = []
    for t, p in enumerate(row):
        lines.append(f"  token {t:2d} {'#' * int(round(p / max(row.max(), 1e-9) * width)):<{width}} {p:.3f}")
    return "\n".join(lines)


def run(args):
    import keras

    from keras_bert3d.models.builder import build_model
    from keras_bert3d.models.describe import count_parameters

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    model = build_model(args.model, args.num_classes)
    if args.weights:
        model.load_weights(args.weights)
    if not model.bert_layers():
        raise ValueError(f"{args.model} has no BERT pooling; pick a *_bert* preset")
    built = time.perf_counter() - start
    clip = synthetic_clip(model.preprocessing, args.seed)
    explain = model.attention_model()
    start = time.perf_counter()
    outputs = explain(clip, training=False)
    seconds = time.perf_counter() - start
    logits = np.asarray(outputs["logits"])[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    print(f"{args.model}: {count_parameters(model):,} parameters, built in {built:.1f}s; "
          f"clip {tuple(clip.shape[1:])} -> {args.num_classes} classes in {seconds:.2f}s "
          f"({'converted weights' if args.weights else 'random initialisation'})")
    print("top-5 classes:")
    for k in np.argsort(-probs)[:5]:
        print(f"  class {k:3d}  p={probs[k]:.4f}  logit={logits[k]:+.3f}")
    for name, scores in outputs.items():
        if name == "logits":
            continue
        cls_row = np.asarray(scores)[0, :, 0, 1:].mean(axis=0)  # CLS query, heads averaged, temporal keys
        print(f"{name}: CLS attention over {cls_row.size} temporal tokens (heads averaged; "
              f"the rest goes to the CLS key itself: {1 - cls_row.sum():.3f})")
        print(attention_bars(cls_row))
