"""The one exception type for bad user input."""


class UserError(Exception):
    """Bad input from the user: one-line message naming the problem and the fix; CLI exit code 2."""
