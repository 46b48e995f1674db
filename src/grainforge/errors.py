"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, option, size) that the user can fix.

    The message must name the offending file or option and say how to fix it, on one line.
    """


class GrainforgeWarning(UserWarning):
    """A finished run whose result the user should look at (e.g. a model that finds no boundary).

    Issued with :func:`warnings.warn`; the CLI prints it as one line ``grainforge: warning: ...`` on stderr.
    """
