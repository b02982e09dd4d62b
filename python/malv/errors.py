"""MaLV-OS errors as Python exceptions: one class per error code, all under malv.Error.

Codes are chosen by what the caller should do next (include/malv/error.h):
fix the input (InvalidArgument ... Unimplemented), free something or retry
(QuotaExceeded, Unavailable, DeadlineExceeded), fix the state
(FailedPrecondition, Aborted, DeviceReset), or give up (Internal, DataLoss,
IoError, Disconnected).

    try:
        conn = malv.connect(token="wrong")
    except malv.PermissionDenied as e:      # Unauthenticated is a PermissionDenied
        print(e.code, e.message)            # unauthenticated: ...
"""


class Error(Exception):
    """A MaLV-OS error: .code (its stable name, e.g. "resource_exhausted"),
    .code_value (its number on the wire), .message and .context (outer
    context lines, innermost first)."""

    code = None
    code_value = None

    def __init__(self, message, code=None, code_value=None, context=()):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if code_value is not None:
            self.code_value = code_value
        self.context = list(context)

    @property
    def retryable(self):
        """True where retrying the same request later can succeed."""
        return self.code in ("resource_exhausted", "unavailable", "deadline_exceeded")

    def __str__(self):
        text = f"{self.code}: {self.message}" if self.code else self.message
        for line in self.context:
            text += f" (in: {line})"
        return text


def _define(name, code, value, base=Error, doc=""):
    cls = type(name, (base,), {"code": code, "code_value": value, "__doc__": doc})
    cls.__module__ = "malv"
    return cls


InvalidArgument = _define("InvalidArgument", "invalid_argument", 1, doc="A malformed or out-of-range value.")
OutOfRange = _define("OutOfRange", "out_of_range", 2, doc="An offset or length past the end of an object.")
NotFound = _define("NotFound", "not_found", 3, doc="The named thing does not exist.")
AlreadyExists = _define("AlreadyExists", "already_exists", 4, doc="The name is taken.")
StaleHandle = _define("StaleHandle", "stale_handle", 5, doc="A freed handle, or another session's.")
WrongHandleType = _define("WrongHandleType", "wrong_handle_type", 6, doc="A handle of another type.")
PermissionDenied = _define("PermissionDenied", "permission_denied", 7,
                           doc="The handle lacks the right, or the admin forbids it.")
Unauthenticated = _define("Unauthenticated", "unauthenticated", 8, base=PermissionDenied,
                          doc="The VM is unknown or its token is wrong (a PermissionDenied).")
Unimplemented = _define("Unimplemented", "unimplemented", 9,
                        doc="An operation, version or feature the host does not offer.")
QuotaExceeded = _define("QuotaExceeded", "resource_exhausted", 20,
                        doc="A quota or capacity is reached (resource_exhausted): free something or wait.")
ResourceExhausted = QuotaExceeded
Unavailable = _define("Unavailable", "unavailable", 21, doc="Transient: the peer is busy; retry.")
DeadlineExceeded = _define("DeadlineExceeded", "deadline_exceeded", 22, doc="It took too long.")
FailedPrecondition = _define("FailedPrecondition", "failed_precondition", 30,
                             doc="The object is in the wrong state for this request.")
Aborted = _define("Aborted", "aborted", 31, doc="Cancelled because an earlier command failed.")
DeviceReset = _define("DeviceReset", "device_reset", 32, doc="The accelerator was reset; objects are gone.")
Internal = _define("Internal", "internal", 40, doc="A bug.")
DataLoss = _define("DataLoss", "data_loss", 41, doc="Stored data is damaged.")
IoError = _define("IoError", "io", 42, doc="An I/O error.")
Disconnected = _define("Disconnected", "disconnected", 43, doc="The connection is closed or broken.")

ALL = [InvalidArgument, OutOfRange, NotFound, AlreadyExists, StaleHandle, WrongHandleType,
       PermissionDenied, Unauthenticated, Unimplemented, QuotaExceeded, Unavailable,
       DeadlineExceeded, FailedPrecondition, Aborted, DeviceReset, Internal, DataLoss, IoError,
       Disconnected]
BY_VALUE = {cls.code_value: cls for cls in ALL}
BY_CODE = {cls.code: cls for cls in ALL}


def from_code(code, message, context=()):
    """The exception for a code's name ("not_found") or number, with a message."""
    cls = BY_CODE.get(code) if isinstance(code, str) else BY_VALUE.get(code)
    if cls is None:
        return Error(message, code=str(code), context=context)
    return cls(message, context=context)
