"""A JSON-friendly description of a built VideoClassifier (what `bert3d models` prints)."""
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.presets.registry import count_parameters  # noqa: F401  (PyTorch's count; bert3d models, demo)


def describe(model, name=None):
    """{name, backbone, frames, size, in_channels, pooling, fusion, tokens, params, gflops}.

    ``tokens`` lists ``[N, d]`` for each BERT's input (empty without BERT); ``gflops`` is the forward
    cost of one clip (multiply-add = 2, `keras_bert3d.models.flops.count_flops`).
    """
    from keras_bert3d.models.flops import count_flops

    clip = model.input
    shape = clip.shape
    config = model.get_config()
    tokens = [[int(layer.input.shape[1]), int(layer.input.shape[2])]
              for layer in model.layers if isinstance(layer, BERTPooling)]
    return {
        "name": name or model.name,
        "backbone": type(model.backbone).__name__,
        "frames": shape[1], "size": shape[2], "in_channels": shape[-1],
        "pooling": config["pooling"], "fusion": config["fusion"],
        "tokens": tokens,
        "params": count_parameters(model),
        "gflops": round(count_flops(model) / 1e9, 1),
    }


def format_table(rows):
    """Rows of ``describe`` as an aligned text table."""
    header = ("name", "backbone", "frames x size", "tokens x dim", "parameters", "GFLOPs")
    lines = [header]
    for r in rows:
        toks = " + ".join(f"{n}x{d}" for n, d in r["tokens"]) or f"- ({r['pooling']})"
        lines.append((r["name"], r["backbone"], f"{r['frames']} x {r['size']}^2 x {r['in_channels']}",
                      toks, f"{r['params']:,}", f"{r['gflops']:.1f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(str(v).ljust(w) if i < 4 else str(v).rjust(w)
                             for i, (v, w) in enumerate(zip(line, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
