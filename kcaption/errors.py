"""Mistakes in what a user asked for: an exception type the CLI prints as one line.

Why a type of its own, rather than catching ValueError or FileNotFoundError in
the CLI: those are also what a bug in the kit (or in a student's step) raises,
and a bug needs its traceback. So the kit raises a `UsageError` only where it
knows the cause is the user's input (a path, an argument, a file's content),
with a message that says what was wrong, what was expected and what to do;
`kcaption` prints it on one line and exits with code 2, and any other
exception keeps its traceback. `kcaption --debug ...` shows the traceback of
a `UsageError` too.

The concrete types are also a ValueError, FileNotFoundError or FileExistsError, so
Python callers (a notebook, a test) catch them as usual.
"""


class UsageError(Exception):
    """Base class: the user asked for something the kit cannot do as asked."""


class InputError(UsageError, ValueError):
    """A wrong argument, or a file whose content is not what was expected."""


class MissingFileError(UsageError, FileNotFoundError):
    """A file or folder the user named (or one that must sit beside it) does not exist."""


class ExistingOutputError(UsageError, FileExistsError):
    """An output the user named exists already, and replacing it needs `--force`."""


class KcaptionWarning(UserWarning):
    """The kit's warnings about the user's input (`kcaption` prints each as one line)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command; the message says what was kept and how to go on (`kcaption` prints it, exit 130)."""
