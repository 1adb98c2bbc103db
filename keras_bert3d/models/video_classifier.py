"""VideoClassifier: backbone + temporal pooling (BERT, TGAP or an ablation head) + dropout + linear."""
import keras

from keras_bert3d.backbones.backbone import FUSIONS, Backbone
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.layers.channel_major_flatten import ChannelMajorFlatten
from keras_bert3d.layers.lstm_pooling import LSTMPooling
from keras_bert3d.layers.non_local_block import NonLocalBlock
from keras_bert3d.layers.temporal_tokens import TemporalTokens
from keras_bert3d.models.preset_configs import build_preset
from keras_bert3d.models.video_preprocessor import VideoPreprocessor
from keras_bert3d.presets import preset_io
from keras_bert3d.presets.registry import PresetListing, reference_recipe
from keras_bert3d.validation import check_choice, check_instance, check_positive_int, check_rate

POOLINGS = ("bert", "tgap", "lstm", "concat", "nonlocal_concat")
# compile()'s default recipe: "adamw" (two_stream_bert2.py) or "sgd" (two_stream2.py); None: by pooling.
RECIPES = (None, "adamw", "sgd")


def _preprocessor(preprocessor, preprocessing):
    """The one preprocessor from either argument (a dict builds one; both given must agree)."""
    check_instance("preprocessor", preprocessor, VideoPreprocessor, optional=True)
    if preprocessing is None:
        return preprocessor
    built = VideoPreprocessor.from_preprocessing(preprocessing, name="preprocessor")
    if preprocessor is not None and preprocessor.preprocessing != built.preprocessing:
        raise ValueError(f"preprocessor={preprocessor.preprocessing} disagrees with preprocessing={preprocessing}; "
                         "give one of them")
    return preprocessor or built


def _fusion(backbone, pooling, fusion):
    """The fusion a BERT head uses: the backbone's own (``SlowFastBackbone(fusion=...)``, which also decides
    which pathways its FR blocks reduce) is the owner; the classifier's ``fusion`` may only repeat it."""
    owned = getattr(backbone, "get_config", dict)().get("fusion") if pooling == "bert" else None
    if fusion is not None and owned is not None and fusion != owned:
        raise ValueError(f"fusion={fusion!r} disagrees with the backbone's fusion={owned!r} (the backbone "
                         "owns it: build the backbone with the fusion you want, or leave the classifier's "
                         "fusion=None)")
    return owned if fusion is None else fusion


@keras.saving.register_keras_serializable(package="keras_bert3d")
class VideoClassifier(keras.Model):
    """A clip classifier: ``backbone`` -> temporal pooling -> Dropout -> [Dense] -> Dense logits.

    The input is the backbone's: a normalised channels-last clip (B, T, H, W, C).
    The output is the logits (B, num_classes), as the reference's ``fc_action``.

    Args:
        backbone: a ``Backbone`` (one pathway, or SlowFast's two).
        num_classes: number of classes.
        pooling: how the feature map becomes one vector:
            ``"bert"``: temporal tokens (spatial mean) pooled by ``BERTPooling`` (the paper);
            ``"tgap"``: temporal global average pooling (mean over T, H, W), the baseline;
            ``"lstm"``: tokens through ``LSTMPooling``, last step;
            ``"concat"``: tokens flattened channel-major;
            ``"nonlocal_concat"``: a ``NonLocalBlock`` on the map, then ``"concat"``.
            Two-pathway backbones concatenate slow first.
        fusion: two pathways with ``pooling="bert"`` only: ``"early"`` (the fast tokens
            are averaged to the slow token count and concatenated on features; one BERT)
            or ``"late"`` (one BERT per pathway, CLS outputs concatenated). ``None`` (default)
            takes the backbone's ``fusion`` (SlowFastBackbone owns it); a value that disagrees
            with the backbone's is refused.
        l2_normalize_tokens: divide each token by its L2 norm before pooling (I3D).
        num_heads, num_layers, bert_dropout, mask_keep_prob, bert_norm, bert_initializer:
            the ``BERTPooling`` settings (``bert_dropout`` is its ``dropout``).
        lstm_hidden_dim, lstm_num_layers: the ``LSTMPooling`` settings.
        head_hidden_dim: ``None``, or the width of a linear layer (no activation)
            between the dropout and the classifier (the concatenation heads: 1550, 1000).
        dropout: the rate before the classifier (reference 0.8; 0.7 flow baselines).
        preprocessor: ``None`` or a `VideoPreprocessor` (raw frames -> the normalised clip the
            weights expect). It serializes with the model and is applied by `preprocess` and
            `predict_frames`, never by ``model(clips)``, which keeps taking normalised clips.
        preprocessing: the same as a JSON dict (what older models and presets carry); it builds
            the preprocessor. Give one of the two (or both, agreeing).
        seed: seed of the BERT masking/dropout randomness.
    """

    def __init__(self, backbone, num_classes, pooling="bert", fusion=None, l2_normalize_tokens=False,
                 num_heads=8, num_layers=1, bert_dropout=0.1, mask_keep_prob=0.8, bert_norm="reference",
                 bert_initializer="bert5", lstm_hidden_dim=450, lstm_num_layers=2, head_hidden_dim=None,
                 dropout=0.8, preprocessor=None, preprocessing=None, recipe=None, seed=None, **kwargs):
        check_instance("backbone", backbone, Backbone, "a keras_bert3d Backbone")
        check_positive_int("num_classes", num_classes)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("fusion", fusion, FUSIONS)
        pathways = backbone.num_pathways
        fusion = _fusion(backbone, pooling, fusion)
        if pathways == 2 and pooling == "bert" and fusion is None:
            raise ValueError("A two-pathway backbone with pooling='bert' needs fusion='early' or 'late'")
        if fusion is not None and (pathways != 2 or pooling != "bert"):
            raise ValueError(f"`fusion` applies to two-pathway backbones with pooling='bert'; received "
                             f"fusion={fusion!r} with {pathways} pathway(s) and pooling={pooling!r}")
        if pathways == 2 and pooling not in ("bert", "tgap"):
            raise ValueError(f"pooling={pooling!r} supports one pathway; two-pathway backbones take 'bert' or 'tgap'")
        check_rate("dropout", dropout)
        preprocessor = _preprocessor(preprocessor, preprocessing)
        check_choice("recipe", recipe, RECIPES)
        bert_kwargs = dict(num_heads=num_heads, num_layers=num_layers, dropout=bert_dropout,
                           mask_keep_prob=mask_keep_prob, norm=bert_norm, initializer=bert_initializer, seed=seed)

        inputs = keras.tree.map_structure(lambda t: keras.Input(shape=t.shape[1:], name=t.name), backbone.input)
        features = keras.tree.flatten(backbone(inputs))

        def tokens(x, name, num_tokens=None):
            return TemporalTokens(num_tokens, l2_normalize_tokens, name=name)(x)

        def bert(x, name):
            # The attention probabilities are a second output of the same node (unused by the
            # logits; `attention_model` exposes them), since Keras cannot re-call a layer
            # with a different output structure in one graph.
            cls, _ = BERTPooling(**bert_kwargs, name=name)(x, return_attention_scores=True)
            return cls

        if pooling == "tgap":
            pooled = [keras.layers.GlobalAveragePooling3D(name=name)(f)
                      for f, name in zip(features, ("tgap", "tgap_fast"))]
            x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="tgap_concat")(pooled)
        elif pooling == "bert" and pathways == 1:
            x = bert(tokens(features[0], "tokens"), "bert")
        elif pooling == "bert" and fusion == "early":
            slow = tokens(features[0], "slow_tokens")
            fast = tokens(features[1], "fast_tokens", num_tokens=features[0].shape[1])
            joined = keras.layers.Concatenate(name="token_concat")([slow, fast])
            x = bert(joined, "bert")
        elif pooling == "bert":  # late fusion
            slow = bert(tokens(features[0], "slow_tokens"), "bert_slow")
            fast = bert(tokens(features[1], "fast_tokens"), "bert_fast")
            x = keras.layers.Concatenate(name="cls_concat")([slow, fast])
        elif pooling == "lstm":
            x = LSTMPooling(lstm_hidden_dim, lstm_num_layers, name="lstm")(tokens(features[0], "tokens"))
        else:
            feature_map = features[0]
            if pooling == "nonlocal_concat":
                feature_map = NonLocalBlock(name="non_local")(feature_map)
            x = ChannelMajorFlatten(name="flatten")(tokens(feature_map, "tokens"))
        x = keras.layers.Dropout(dropout, seed=seed, name="classifier_dropout")(x)
        if head_hidden_dim is not None:
            x = keras.layers.Dense(head_hidden_dim, name="classifier_hidden")(x)
        # float32 logits under mixed precision too (a numerically safe loss and softmax); float64 under float64.
        head_dtype = keras.backend.result_type(keras.config.dtype_policy().variable_dtype, "float32")
        logits = keras.layers.Dense(num_classes, name="classifier", dtype=head_dtype)(x)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        self.backbone = backbone
        self._classifier_config = {
            "num_classes": num_classes, "pooling": pooling, "fusion": fusion,
            "l2_normalize_tokens": l2_normalize_tokens, "num_heads": num_heads, "num_layers": num_layers,
            "bert_dropout": bert_dropout, "mask_keep_prob": mask_keep_prob, "bert_norm": bert_norm,
            "bert_initializer": bert_initializer, "lstm_hidden_dim": lstm_hidden_dim,
            "lstm_num_layers": lstm_num_layers, "head_hidden_dim": head_hidden_dim, "dropout": dropout,
            "recipe": recipe, "seed": seed,
        }
        self.preprocessor = preprocessor

    @property
    def num_classes(self):
        return self._classifier_config["num_classes"]

    @property
    def preprocessing(self):
        """The preprocessor's rules as a dict (frames, frame size, crop size, scale, mean, std), or None."""
        return None if self.preprocessor is None else self.preprocessor.preprocessing

    def preprocess(self, clips):
        """Raw uint8 clips ``(B, T, H, W, C)`` of any frame size -> the normalised clips ``model`` takes."""
        if self.preprocessor is None:
            raise ValueError(f"{self.name} has no preprocessor; build it with one (VideoClassifier(..., "
                             "preprocessor=VideoPreprocessor(...)) or from a preset)")
        return self.preprocessor(clips)

    def predict_frames(self, clips, **kwargs):
        """``model.predict`` on raw uint8 clips, preprocessed by the model's own preprocessor: the logits."""
        return self.predict(self.preprocess(clips), **kwargs)

    presets = PresetListing()

    @classmethod
    def from_preset(cls, preset, num_classes=None, load_weights=True, **overrides):
        """A preset name (`keras_bert3d.list_models()`; initialised weights, ``num_classes`` needed) or a folder
        written by `save_to_preset` (its weights; another ``num_classes`` gives a new head). ``overrides`` change
        any backbone or classifier argument, as in `build_model`."""
        if preset_io.is_preset_folder(preset):
            return preset_io.load_task_preset(cls, preset, num_classes, load_weights, **overrides)
        if num_classes is None:
            raise ValueError(f"VideoClassifier.from_preset({preset!r}) needs num_classes= (a named preset has no "
                             "trained head); a folder written by save_to_preset has its own")
        return build_preset(preset, cls, num_classes, **overrides)

    def save_to_preset(self, preset_dir):
        """Write keras-hub's preset layout (config.json, model.weights.h5, task.json, task.weights.h5,
        preprocessor.json, metadata.json); `from_preset` reads it back with identical logits."""
        preset_io.save_task_preset(self, preset_dir)

    @property
    def recipe(self):
        """The reference recipe ``compile()`` defaults to: the preset's, else `reference_recipe` of the pooling
        ("adamw" for BERT, "sgd" otherwise)."""
        return self._classifier_config["recipe"] or reference_recipe(self._classifier_config["pooling"])

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """``keras.Model.compile`` with the reference recipe for every ``"auto"`` (as keras-hub's tasks):
        the optimizer of `recipe` (AdamW lr 1e-5, weight decay 1e-3, or the reference SGD lr 1e-2, momentum and
        dampening 0.9; ``keras_bert3d.models.recipe``; no gradient accumulation, which the training config
        sets), sparse cross-entropy on the logits, and the
        ``top1``/``top5`` accuracies. Anything given explicitly wins."""
        if "auto" in (optimizer, loss, metrics):
            from keras_bert3d.models import recipe

            if optimizer == "auto":
                optimizer = recipe.make_optimizer(self.recipe, self, gradient_accumulation_steps=1)
            if loss == "auto":
                loss = recipe.make_loss()
            if metrics == "auto":
                metrics = recipe.make_metrics(self.num_classes)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def bert_layers(self):
        """The BERTPooling layers by name (``bert``, or ``bert_slow`` and ``bert_fast``)."""
        return {layer.name: layer for layer in self.layers if isinstance(layer, BERTPooling)}

    def attention_model(self):
        """A model clip -> ``{"logits": ..., "<bert name>": attention probabilities}``.

        The probabilities (B, heads, N + 1, N + 1) are those of each BERT's last block
        in inference mode; row 0 is where the CLS token looks: which moments decided.
        The returned model shares this model's layers and weights.
        """
        berts = self.bert_layers()
        if not berts:
            raise ValueError(f"attention_model() needs pooling='bert'; this model has "
                             f"pooling={self._classifier_config['pooling']!r}")
        outputs = {"logits": self.output}
        for name, layer in berts.items():
            outputs[name] = layer.output[1]
        return keras.Model(self.input, outputs, name=f"{self.name}_attention")

    def get_config(self):
        preprocessor = None if self.preprocessor is None else keras.saving.serialize_keras_object(self.preprocessor)
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone), **self._classifier_config,
                "preprocessor": preprocessor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)
