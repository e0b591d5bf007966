"""The error hierarchy: one root, each subclass also inherits the builtin it refines.

Messages say what is wrong, what was expected versus found, and how to fix it. The CLI turns any
:class:`HepatoplanError` into one line on stderr and exit status 2.
"""


class HepatoplanError(Exception):
    """Root of every error hepatoplan raises on purpose."""


class InputError(HepatoplanError, ValueError):
    """A user-supplied value (file content, option, number) is invalid."""


class InputFileError(InputError, FileNotFoundError):
    """A file or folder is missing or cannot be read."""


class GeometryMismatchError(InputError):
    """Two images that must share one voxel grid do not."""


class LabelError(InputError):
    """A label map is not an integer, non-negative label image as required."""


class NotComputableError(HepatoplanError, RuntimeError):
    """A quantity cannot be computed from what was given (say which input would make it so)."""
