"""Argument checks shared by every layer and backbone: a ValueError that echoes what was received."""
import numbers


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(name, value, optional=False):
    """``value`` must be a positive int (or None when ``optional``)."""
    if optional and value is None:
        return None
    if not _is_positive_int(value):
        kind = "None or a positive int" if optional else "a positive int"
        raise ValueError(f"`{name}` must be {kind}; received {name}={value!r}")
    return value


def check_positive_ints(name, values, length=None):
    """``values`` must be a list/tuple of positive ints (of ``length`` items if given); returns a list."""
    if (not isinstance(values, (list, tuple)) or (length is not None and len(values) != length)
            or not all(_is_positive_int(v) for v in values)):
        count = f"{length} " if length is not None else ""
        raise ValueError(f"`{name}` must be {count}positive ints; received {name}={values!r}")
    return [int(v) for v in values]


def check_bn_args(bn_epsilon, bn_momentum):
    """BatchNorm epsilon > 0 and momentum in [0, 1) (Keras convention: 1 would freeze the statistics)."""
    if not isinstance(bn_epsilon, (int, float)) or not bn_epsilon > 0:
        raise ValueError(f"`bn_epsilon` must be > 0; received bn_epsilon={bn_epsilon!r}")
    if not isinstance(bn_momentum, (int, float)) or not 0 <= bn_momentum < 1:
        raise ValueError(f"`bn_momentum` must be in [0, 1); received bn_momentum={bn_momentum!r}")


def check_rate(name, value):
    """A dropout-like rate in [0, 1)."""
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); received {name}={value!r}")
    return float(value)


def check_choice(name, value, choices):
    """Raise a ValueError echoing ``value`` unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {name}={value!r}")
    return value


def check_divisible(name, value, divisor, divisor_name=None, why=""):
    """``value`` must be a multiple of ``divisor`` (another argument when ``divisor_name`` names it)."""
    if value % divisor:
        of, received = (f"`{divisor_name}`", f", {divisor_name}={divisor!r}") if divisor_name else (divisor, "")
        raise ValueError(f"`{name}` must be a multiple of {of}{why}; received {name}={value!r}{received}")
    return value


def check_instance(name, value, cls, kind=None, optional=False):
    """``value`` must be an instance of ``cls`` (``kind`` names it in the error; None passes when ``optional``)."""
    if (optional and value is None) or isinstance(value, cls):
        return value
    raise ValueError(f"`{name}` must be {kind or 'a ' + cls.__name__}; received {type(value).__name__}")


def check_bool(name, value):
    """``value`` must be True or False (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; received {name}={value!r}")
    return value


def remat_stages(remat, num_stages):
    """A backbone's ``remat`` as the number of its leading stages whose blocks recompute.

    ``False``: none; ``True``: every stage (and the feature-reduction block); an int ``n`` in
    ``1 .. num_stages``: the blocks of the first ``n`` stages, where the activations are largest
    for the compute they cost to redo.
    """
    if isinstance(remat, bool):
        return num_stages if remat else 0
    if isinstance(remat, int) and 1 <= remat <= num_stages:
        return remat
    raise ValueError(f"`remat` must be True, False or a number of leading stages 1..{num_stages}; "
                     f"received remat={remat!r}")


def check_not_both(first, first_value, second, second_value):
    """At most one of two alternative arguments is given (not None)."""
    if first_value is not None and second_value is not None:
        raise ValueError(f"give a {first} or a {second}, not both; received {first}={first_value!r}, "
                         f"{second}={second_value!r}")


def check_int_range(name, value, low, high=None):
    """``value`` must be an int in ``low..high`` (``high=None``: no upper bound); returns it."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
            or (high is not None and value > high)):
        bounds = f"an int >= {low}" if high is None else f"an int in {low}..{high}"
        raise ValueError(f"`{name}` must be {bounds}; received {name}={value!r}")
    return value


def check_positive_number(name, value):
    """``value`` must be a number > 0 (int or float, not a bool); returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be > 0; received {name}={value!r}")
    return value


def is_int(value):
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    """An int or a float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int_at_least(name, value, minimum):
    """``value`` must be None or an int >= ``minimum`` (`check_int_range` without an upper bound)."""
    return None if value is None else check_int_range(name, value, minimum)


def check_open_unit(name, value):
    """``value`` must be a number strictly between 0 and 1 (a decay factor)."""
    if not is_number(value) or not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1); received {name}={value!r}")
    return value


_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_file_name(name, value):
    """``value`` must be a usable file or folder name: letters, digits, ``.``, ``_`` and ``-`` only (no path
    separators, spaces or glob characters), not ``.``/``..`` and not starting with ``-``; returns it."""
    if (not isinstance(value, str) or not value or value in (".", "..") or value.startswith("-")
            or not set(value) <= _NAME_CHARACTERS):
        raise ValueError(f"`{name}` must be a name of letters, digits, '.', '_' and '-' (not '.' or '..', not "
                         f"starting with '-'); received {name}={value!r}")
    return value
