"""PyTorch-style symmetric padding for channels-last 5-D tensors (TF 'same' pads asymmetrically)."""
from keras import ops


def triple(value, name="value"):
    """An int or a length-3 sequence -> a tuple of three ints (T, H, W)."""
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"`{name}` must be an int or 3 ints (T, H, W); received {name}={value!r}")
    return value


def symmetric_pad(x, padding):
    """Zero-pad ``x`` (B, T, H, W, C) by ``padding[i]`` on both sides of T, H and W."""
    if not any(padding):
        return x
    return ops.pad(x, [[0, 0]] + [[p, p] for p in padding] + [[0, 0]])


def same_padding(kernel):
    """The PyTorch padding ``k // 2`` that keeps an odd kernel's size at stride 1."""
    return tuple(k // 2 for k in kernel)


def conv_output_size(size, kernel, stride, pad):
    """Output length of a conv/pool with symmetric padding ``pad`` (None stays None)."""
    if size is None:
        return None
    return (size + 2 * pad - kernel) // stride + 1
