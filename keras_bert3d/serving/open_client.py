"""Opening a client from what ``bert3d predict --model`` takes: a model file, an export or a server's URL.

`open_client` picks the client: `rest_client.RestClient` for ``http(s)://HOST:8501/v1/models/NAME[/versions/N |
/labels/L]``, `grpc_client.GrpcClient` for ``grpc://HOST:8500/NAME[/N]``, `local_clients.SavedModelClient` for a
SavedModel folder (or a folder of ``<version>/`` exports: the highest), `local_clients.KerasClient` for a
``.keras`` file (`model_files.load_classifier`) or a Keras model; a client is returned as it is.
"""
import os

from keras_bert3d.serving.grpc_client import GrpcClient
from keras_bert3d.serving.local_clients import KerasClient, SavedModelClient
from keras_bert3d.serving.model_files import load_classifier, saved_model_dir
from keras_bert3d.serving.rest_client import RestClient
from keras_bert3d.serving.video_client import VideoClient

MODEL_FILE_SUFFIXES = (".keras", ".h5")


def open_client(model, class_names=None, frame_size=None, clip_len=None, unsafe_legacy_h5=False):
    """The client for ``model`` (see the module docstring).

    Args:
        model: a path or URL, a Keras model built by keras_bert3d, or a `VideoClient`.
        class_names: names by class index; default the export's own, or the ``class_names.json`` beside a
            ``.keras`` file.
        frame_size, clip_len: served models only: resize frames to ``[H, W]`` before sending; frames per clip
            when the served signature does not fix it.
        unsafe_legacy_h5: accept a legacy ``.h5`` model file (`model_files.check_not_legacy_h5`): unsafe.

    A SavedModel folder is code (a TensorFlow graph that runs as written): open only your own or a trusted one.
    """
    if isinstance(model, VideoClient):
        return model
    if not isinstance(model, (str, os.PathLike)):
        return KerasClient(model, class_names=class_names)
    model = os.fspath(model)
    served = dict(clip_len=clip_len, class_names=class_names, frame_size=frame_size)
    if model.startswith(("http://", "https://")):
        return RestClient.from_url(model, **served)
    if model.startswith("grpc://"):
        return GrpcClient.from_url(model, **served)
    if not os.path.exists(model):
        raise FileNotFoundError(f"--model {model}: no such file or directory")
    if os.path.isdir(model):
        return SavedModelClient(saved_model_dir(model), class_names=class_names)
    if not model.endswith(MODEL_FILE_SUFFIXES):
        raise ValueError(f"--model {model}: expected a .keras file, a SavedModel dir or a server URL")
    return KerasClient(*load_classifier(model, class_names, MODEL_FILE_SUFFIXES, unsafe_legacy_h5))
