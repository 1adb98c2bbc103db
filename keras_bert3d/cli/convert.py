"""`bert3d convert`: a reference checkpoint (.pth or .npz) -> Keras weights (.weights.h5)."""


def add_arguments(parser):
    parser.add_argument("checkpoint", help="reference fine-tuned model, backbone-only pretrained file, or .npz")
    parser.add_argument("--arch", required=True, help="preset name, e.g. rgb_r2plus1d_32f_34_bert10")
    parser.add_argument("--num-classes", type=int, required=True, help="classes of the head")
    parser.add_argument("-o", "--output", required=True, help="OUT.weights.h5")
    parser.add_argument("--strict", action="store_true", help="fail on any missing or unexpected key")


def run(args):
    from keras_bert3d.convert.checkpoint import convert_checkpoint

    _, report = convert_checkpoint(args.checkpoint, args.arch, args.num_classes, args.output, strict=args.strict)
    print(report.summary())
    print(f"wrote {args.output}")
