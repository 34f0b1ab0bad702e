"""The viewer's screens: each owns its panes and binds its own keys; the app switches between them."""


def is_screen(screen: object, name: str) -> bool:
    """Whether `screen` is of the screen class `name` (or a subclass: a replay's), without importing a module
    the start does not need."""
    return any(cls.__name__ == name for cls in type(screen).__mro__)
