"""Reference state-dict keys -> Keras variables: the mechanism every family's mapping uses.

A :class:`WeightMap` is an ordered table ``reference key -> (keras variable, transform)``.
The family modules (``convert/r2plus1d.py`` ...) fill it by walking a built model; ``load``
then copies a state dict into the variables, checking every shape first.
"""
import dataclasses

import numpy as np

# PyTorch Conv3d (out, in/groups, kT, kH, kW) -> Keras Conv3D (kT, kH, kW, in/groups, out).
CONV_TRANSPOSE = (2, 3, 4, 1, 0)
IGNORED_SUFFIXES = ("num_batches_tracked",)


def conv_kernel(w):
    return np.transpose(w, CONV_TRANSPOSE)


def dense_kernel(w):
    return np.transpose(w)


@dataclasses.dataclass
class LoadReport:
    """What a load did: keys copied, keys the model expected but the file lacks, and keys
    in the file the model has no place for."""

    loaded: list
    missing: list
    unexpected: list
    skipped: list = dataclasses.field(default_factory=list)

    def summary(self):
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing ({len(self.missing)}): " + ", ".join(self.missing[:20])
                         + (" ..." if len(self.missing) > 20 else ""))
        if self.skipped:
            lines.append(f"skipped, shape differs ({len(self.skipped)}): " + ", ".join(self.skipped[:20])
                         + (" ..." if len(self.skipped) > 20 else ""))
        if self.unexpected:
            lines.append(f"unexpected ({len(self.unexpected)}): " + ", ".join(self.unexpected[:20])
                         + (" ..." if len(self.unexpected) > 20 else ""))
        return "\n".join(lines)


class WeightMap:
    """Ordered ``reference key -> (variable, transform)`` table.

    ``aliases`` maps a key the checkpoint may carry instead (the SlowFast FRMB
    duplicates ``mapper*.*``) to the canonical key; an alias is used only when the
    canonical key is absent, and never reported as unexpected.
    """

    def __init__(self):
        self.entries = {}
        self.aliases = {}

    # -- filling ---------------------------------------------------------------
    def add(self, key, variable, transform=None):
        if key in self.entries:
            raise ValueError(f"Reference key {key!r} mapped twice")
        self.entries[key] = (variable, transform)

    def add_alias(self, alias, key):
        self.aliases[alias] = key

    def alias_prefix(self, alias_prefix, prefix):
        """Accept every key under ``prefix`` also under ``alias_prefix``."""
        for key in list(self.entries):
            if key.startswith(prefix):
                self.add_alias(alias_prefix + key[len(prefix):], key)

    def conv(self, prefix, layer):
        """A ``keras.layers.Conv3D`` (or Conv1D/Dense-like conv) at ``prefix``."""
        self.add(f"{prefix}.weight", layer.kernel, conv_kernel)
        if getattr(layer, "use_bias", False):
            self.add(f"{prefix}.bias", layer.bias)

    def bn(self, prefix, layer):
        """A ``keras.layers.BatchNormalization`` at ``prefix`` (running stats included)."""
        self.add(f"{prefix}.weight", layer.gamma)
        self.add(f"{prefix}.bias", layer.beta)
        self.add(f"{prefix}.running_mean", layer.moving_mean)
        self.add(f"{prefix}.running_var", layer.moving_variance)

    def dense(self, prefix, layer):
        self.add(f"{prefix}.weight", layer.kernel, dense_kernel)
        if getattr(layer, "use_bias", True) and layer.bias is not None:
            self.add(f"{prefix}.bias", layer.bias)

    def extend(self, other, prefix=""):
        for key, (var, fn) in other.entries.items():
            self.add(prefix + key, var, fn)
        for alias, key in other.aliases.items():
            self.add_alias(prefix + alias, prefix + key)

    # -- loading ---------------------------------------------------------------
    def resolve(self, state_dict):
        """Match ``state_dict`` keys to entries; returns (pairs, missing, unexpected)."""
        keys = [k for k in state_dict if not k.endswith(IGNORED_SUFFIXES)]
        pairs, missing = [], []
        for key in self.entries:
            if key in state_dict:
                pairs.append((key, key))
            else:
                alias = next((a for a, k in self.aliases.items() if k == key and a in state_dict), None)
                if alias is None:
                    missing.append(key)
                else:
                    pairs.append((key, alias))
        used = {src for _, src in pairs}
        unexpected = [k for k in keys if k not in used and k not in self.entries and k not in self.aliases]
        return pairs, missing, unexpected

    def load(self, state_dict, strict=False, skip_mismatched=False):
        """Copy ``state_dict`` (name -> array) into the mapped variables.

        Every shape is checked before anything is assigned: a mismatch raises a
        ``ValueError`` naming the key, the checkpoint's shape and the model's shape.
        With ``strict=True`` missing or unexpected keys raise as well. With
        ``skip_mismatched=True`` a mismatched key is left as initialised and listed in
        ``LoadReport.skipped`` instead (a backbone file loaded into an FRMB model, whose
        replaced block starts from scratch as in the reference).
        """
        pairs, missing, unexpected = self.resolve(state_dict)
        if strict and (missing or unexpected):
            raise ValueError("Checkpoint does not match the model:\n"
                             + LoadReport([], missing, unexpected).summary())
        values, skipped = [], []
        for key, src in pairs:
            variable, fn = self.entries[key]
            array = np.asarray(state_dict[src], dtype=np.float32)
            value = fn(array) if fn is not None else array
            want = tuple(variable.shape)
            if tuple(value.shape) != want and skip_mismatched:
                skipped.append(src)
                continue
            if tuple(value.shape) != want:
                raise ValueError(
                    f"Shape mismatch for {src!r}: the checkpoint has {tuple(array.shape)} "
                    f"(as Keras {tuple(value.shape)}), the model expects {want} "
                    f"(variable {variable.path!r})")
            values.append((variable, value))
        for variable, value in values:
            variable.assign(value.astype(variable.dtype))
        loaded = [src for _, src in pairs if src not in skipped]
        return LoadReport(loaded, missing, unexpected, skipped)

    def export(self):
        """The inverse: a reference-named state dict (numpy) of the current values."""
        out = {}
        for key, (variable, fn) in self.entries.items():
            value = np.asarray(keras_to_numpy(variable))
            if fn is conv_kernel:
                value = np.transpose(value, np.argsort(CONV_TRANSPOSE))
            elif fn is dense_kernel:
                value = value.T
            elif hasattr(fn, "inverse"):
                value = fn.inverse(value)
            elif fn is not None:
                raise NotImplementedError(f"No inverse transform for {key!r}")
            out[key] = value
        return out


def keras_to_numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)
