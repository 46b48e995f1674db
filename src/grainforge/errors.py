"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, option, size) that the user can fix.

    The message must name the offending file or option and say how to fix it, on one line.
    """
