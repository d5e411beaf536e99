"""Argument checks shared by the layers and models, with Keras-style messages."""


def check_positive_ints(**values):
    """Raise `ValueError` naming the first argument that is not a positive int.

    Example:
        >>> check_positive_ints(units=-3)
        ValueError: `units` must be a positive int. Received: units=-3
    """
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
