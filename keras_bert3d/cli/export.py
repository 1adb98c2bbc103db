"""`bert3d export`: a trained .keras model -> a TF Serving SavedModel (and optionally ONNX / LiteRT files)."""
import os
import shlex

DEFAULT_ROOT = "saved_models"


def add_arguments(parser):
    parser.add_argument("model", help="a .keras file saved from a keras_bert3d VideoClassifier")
    parser.add_argument("--output", help=f"the model's export folder; default {DEFAULT_ROOT}/<model name>")
    parser.add_argument("--version", type=int, help="version sub-folder; default the next free one (1, 2, ...)")
    parser.add_argument("--class-names", help="file of class names: one per line, or a JSON list (default: the "
                        "class_names.json next to MODEL, as training runs write it)")
    parser.add_argument("--no-warmup", action="store_true", help="skip assets.extra/tf_serving_warmup_requests")
    parser.add_argument("--onnx", metavar="PATH",
                        help="also write the normalised-clip model as ONNX, batch 1 (needs pip install tf2onnx)")
    parser.add_argument("--litert", metavar="PATH", help="also write predict_normalized as LiteRT (.tflite)")
    parser.add_argument("--models-config", action="store_true",
                        help="(re)write models.config for every export next to this one (TF Serving)")


def docker_command(folder, model_name=None, config_file=None):
    """The ``docker run`` line serving ``folder`` (one model's versions, or with ``config_file`` a folder of
    models), every argument shell-quoted: a path or model name with spaces or ``$(...)`` stays one word."""
    if config_file is not None:
        words = ["-p", "8500:8500", "-p", "8501:8501", "-v", f"{folder}:/models", "tensorflow/serving",
                 f"--model_config_file=/models/{config_file}"]
    else:
        words = ["-p", "8501:8501", "-v", f"{folder}:/models/{model_name}", "-e", f"MODEL_NAME={model_name}",
                 "tensorflow/serving"]
    return shlex.join(["docker", "run", "--rm", *words])


def run(args):
    from keras_bert3d.serving.export import export_saved_model
    from keras_bert3d.serving.export_formats import export_litert, export_onnx
    from keras_bert3d.serving.model_files import load_classifier, read_class_names
    from keras_bert3d.serving.signatures import NORMALIZED_SIGNATURE, OUTPUT_KEYS, SERVING_SIGNATURE

    names = read_class_names(args.class_names) if args.class_names else None  # else the run's class_names.json
    model, class_names = load_classifier(args.model, names)
    output = args.output or os.path.join(DEFAULT_ROOT, model.name)
    path = export_saved_model(model, output, class_names=class_names, version=args.version,
                              warmup=not args.no_warmup)
    prep = model.preprocessing
    frames, channels = prep["num_frames"], len(prep["mean"])
    print(f"wrote {path}")
    print(f"  {SERVING_SIGNATURE}: clips uint8 (batch, {frames}, height, width, {channels}) -> resized to "
          f"{prep['frame_size'][0]}x{prep['frame_size'][1]}, centre crop {prep['crop_size']}, normalised")
    print(f"  {NORMALIZED_SIGNATURE}: clips float32 (batch, {frames}, {prep['crop_size']}, {prep['crop_size']}, "
          f"{channels})")
    print(f"  outputs: {', '.join(OUTPUT_KEYS)}")
    if args.onnx:
        print(f"wrote {export_onnx(model, args.onnx)}")
    if args.litert:
        print(f"wrote {export_litert(path, args.litert)}")
    if args.models_config:
        from keras_bert3d.serving.models_config import CONFIG_NAME, config_for_exports, write_models_config

        root = os.path.dirname(os.path.abspath(output))
        config = write_models_config(os.path.join(root, CONFIG_NAME), config_for_exports(root))
        print(f"wrote {config}")
        print("serve: " + docker_command(root, config_file=CONFIG_NAME))
    else:
        print("serve: " + docker_command(os.path.abspath(output), model_name=model.name))
