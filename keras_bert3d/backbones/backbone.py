"""The small base every backbone builds on: a functional model with named stage outputs."""
import keras

from keras_bert3d.presets import preset_io
from keras_bert3d.presets.overrides import route_overrides
from keras_bert3d.presets.registry import PresetListing, backbone_class, get_preset
from keras_bert3d.validation import check_choice

# The feature-reduction blocks of the paper (REFERENCE.md 1.3) and SlowFast's BERT fusions: what the backbones
# take as ``feature_reduction`` and ``fusion`` (and VideoClassifier as ``fusion``).
FEATURE_REDUCTIONS = (None, "frmb", "frab")
FUSIONS = (None, "early", "late")
IN_CHANNELS = (3, 2)  # RGB, flow


@keras.saving.register_keras_serializable(package="keras_bert3d")
class Backbone(keras.Model):
    """A 3D-CNN feature extractor built with the functional API.

    Subclasses validate their arguments, build the graph of named layers from a
    channels-last clip input ``(B, T, H, W, C)``, call
    ``super().__init__(inputs=..., outputs=..., name=...)`` and then store every
    constructor argument in ``self._backbone_config`` (returned by ``get_config``).

    Attributes:
        stage_outputs: dict of stage name -> symbolic tensor (``"stem"``,
            ``"stage1"`` ... ``"stage4"``, ``"reduction"``; SlowFast prefixes
            ``slow_`` / ``fast_``). Useful to build feature sub-models with
            ``keras.Model(backbone.input, backbone.stage_outputs["stage2"])``.
        feature_dims: the channel count of each output feature map.
    """

    def __init__(self, *args, stage_outputs=None, **kwargs):
        # A functional model ignores `dtype`; keep the policy so get_config round-trips it
        # (the subclasses pass it to every layer they build).
        dtype = kwargs.pop("dtype", None)
        super().__init__(*args, **kwargs)
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)
        self.stage_outputs = dict(stage_outputs or {})

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy), **self._backbone_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    presets = PresetListing()

    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """A preset name (its backbone, initialised) or a folder from ``save_to_preset`` (with weights);
        ``overrides`` change the backbone's arguments."""
        if preset_io.is_preset_folder(preset):
            backbone = preset_io.load_backbone_preset(preset, load_weights, **overrides)
        else:
            config = get_preset(preset)["backbone"]
            backbone_cls = backbone_class(config["class"])
            config["config"].update(route_overrides(overrides, backbone_cls, source=preset)[0])
            backbone = backbone_cls(**config["config"], name="backbone")
        if not isinstance(backbone, cls):
            raise ValueError(f"{preset} holds a {type(backbone).__name__}, not a {cls.__name__}")
        return backbone

    def save_to_preset(self, preset_dir):
        """config.json, model.weights.h5 and metadata.json in keras-hub's layout."""
        preset_io.save_backbone_preset(self, preset_dir)

    @property
    def num_pathways(self):
        return len(self.outputs)

    @property
    def feature_dims(self):
        return [int(t.shape[-1]) for t in self.outputs]


def clip_input(num_frames, image_size, in_channels, name="clip"):
    """The channels-last clip input every backbone takes; ``None`` sizes are dynamic."""
    check_choice("in_channels", in_channels, IN_CHANNELS)  # 3: RGB, 2: flow
    size = None if image_size is None else int(image_size)
    frames = None if num_frames is None else int(num_frames)
    return keras.Input(shape=(frames, size, size, in_channels), name=name)

