"""`bert3d models-config ROOT`: TF Serving's ``models.config`` for the exports under ROOT (`<name>/<version>/`).

    bert3d models-config saved_models --all-versions --label stable=NAME:1
"""
import argparse
import os
import re


def _label(text):
    match = re.fullmatch(r"([A-Za-z0-9_\-]+)=([A-Za-z0-9_.\-]+):(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"a label is LABEL=MODEL:VERSION; received {text!r}")
    return match.group(2), match.group(1), int(match.group(3))


def add_arguments(parser):
    from keras_bert3d.serving.models_config import CONFIG_NAME, CONTAINER_ROOT  # light: no TensorFlow

    parser.add_argument("root", help="the exports' folder (saved_models), mounted at --container-root")
    parser.add_argument("-o", "--output", help=f"default ROOT/{CONFIG_NAME}")
    parser.add_argument("--container-root", default=CONTAINER_ROOT, help="where ROOT is mounted in the container")
    parser.add_argument("--all-versions", action="store_true", help="serve every version (default: latest)")
    parser.add_argument("--label", type=_label, action="append", default=[], help="LABEL=MODEL:VERSION")


def run(args):
    from keras_bert3d.serving.models_config import CONFIG_NAME, config_for_exports, scan_exports, write_models_config

    models = config_for_exports(args.root, args.all_versions)
    labels = {}
    for model, label, version in args.label:
        labels.setdefault(model, {})[label] = version
    on_disk = scan_exports(args.root)
    for model in labels:  # a labelled model serves every version on disk, so its labels can point at any
        if model in models:
            models[model] = on_disk[model]
    path = write_models_config(args.output or os.path.join(args.root, CONFIG_NAME), models, args.container_root,
                               labels)
    served = ", ".join(f"{name} {versions or 'latest'}" for name, versions in models.items())
    print(f"wrote {path}: {served}")
    return 0
